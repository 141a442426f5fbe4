import type { ConfigFragment } from '../chassis/index.js'
import type { CacheOptions } from './options.js'

export const cacheConfigFragment = {
  properties: {
    CACHE_ENABLED: { type: 'boolean', default: true, description: 'Serve cacheable routes through the cache (false: every request reaches PostgreSQL)' },
    CACHE_TTL: { type: 'integer', default: 300, minimum: 1, description: 'Default TTL of a cache entry in seconds' },
    CACHE_PREFIX: { type: 'string', default: 'app:', description: 'Prefix of every cache key and channel in Redis' },
    CACHE_GRACE: { type: 'integer', default: 60, minimum: 0, description: 'Seconds an expired entry is kept to be served if its loader fails' },
    CACHE_LOCAL_MAX_ENTRIES: { type: 'integer', default: 10000, minimum: 1, description: 'Entries the in-process tier holds at most' },
    CACHE_LOCAL_MAX_BYTES: { type: 'integer', default: 67108864, minimum: 1024, description: 'Bytes (serialized) the in-process tier holds at most' },
    CACHE_LOCAL_TTL: { type: 'integer', default: 60, minimum: 0, description: 'Seconds an in-process copy stays fresh at most (never past its Redis TTL)' },
    CACHE_BREAKER_THRESHOLD: { type: 'integer', default: 5, minimum: 1, description: 'Consecutive Redis failures that open the cache circuit breaker' },
    CACHE_BREAKER_COOLDOWN_MS: { type: 'integer', default: 2000, minimum: 0, description: 'Ms the cache breaker stays open before probing Redis again' },
    CACHE_ACK_TIMEOUT_MS: { type: 'integer', default: 200, minimum: 0, description: 'Ms a write waits for other instances to drop the keys it invalidated' }
  }
} as const satisfies ConfigFragment

export interface CacheConfig {
  CACHE_ENABLED: boolean
  CACHE_TTL: number
  CACHE_PREFIX: string
  CACHE_GRACE: number
  CACHE_LOCAL_MAX_ENTRIES: number
  CACHE_LOCAL_MAX_BYTES: number
  CACHE_LOCAL_TTL: number
  CACHE_BREAKER_THRESHOLD: number
  CACHE_BREAKER_COOLDOWN_MS: number
  CACHE_ACK_TIMEOUT_MS: number
  REDIS_COMMAND_TIMEOUT_MS: number
}

export function cacheOptionsFromConfig (config: CacheConfig): CacheOptions {
  return {
    ttl: config.CACHE_TTL,
    prefix: config.CACHE_PREFIX,
    grace: config.CACHE_GRACE,
    localMaxEntries: config.CACHE_LOCAL_MAX_ENTRIES,
    localMaxBytes: config.CACHE_LOCAL_MAX_BYTES,
    localTtl: config.CACHE_LOCAL_TTL,
    breakerThreshold: config.CACHE_BREAKER_THRESHOLD,
    breakerCooldownMs: config.CACHE_BREAKER_COOLDOWN_MS,
    ackTimeoutMs: config.CACHE_ACK_TIMEOUT_MS,
    redisTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS
  }
}
