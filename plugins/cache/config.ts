import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import type { RedisConfig } from '../redis/index.js'
import { cacheDefaults, type CacheOptions } from './options.js'

export const cacheConfigFragment = {
  properties: {
    CACHE_ENABLED: { type: 'boolean', default: true, description: 'Serve cacheable routes through the cache (false: every request reaches PostgreSQL)' },
    CACHE_TTL: { type: 'integer', default: cacheDefaults.ttl, minimum: 1, description: 'Default TTL of a cache entry in seconds' },
    CACHE_PREFIX: { type: 'string', default: cacheDefaults.prefix, description: 'Prefix of every cache key and channel in Redis' },
    CACHE_GRACE: { type: 'integer', default: cacheDefaults.grace, minimum: 0, description: 'Seconds an expired entry is kept to be served if its loader fails' },
    CACHE_LOCAL_MAX_ENTRIES: { type: 'integer', default: cacheDefaults.localMaxEntries, minimum: 1, description: 'Entries the in-process tier holds at most' },
    CACHE_LOCAL_MAX_BYTES: { type: 'integer', default: cacheDefaults.localMaxBytes, minimum: 1024, description: 'Bytes (serialized) the in-process tier holds at most' },
    CACHE_LOCAL_TTL: { type: 'integer', default: cacheDefaults.localTtl, minimum: 0, description: 'Seconds an in-process copy stays fresh at most (never past its Redis TTL)' },
    CACHE_BREAKER_THRESHOLD: { type: 'integer', default: cacheDefaults.breakerThreshold, minimum: 1, description: 'Consecutive Redis failures that open the cache circuit breaker (calls failing in one stall count once)' },
    CACHE_BREAKER_COOLDOWN_MS: { type: 'integer', default: cacheDefaults.breakerCooldownMs, minimum: 0, description: 'Ms the cache breaker stays open before probing Redis again' },
    CACHE_ACK_TIMEOUT_MS: { type: 'integer', default: cacheDefaults.ackTimeoutMs, minimum: 0, description: 'Ms a write waits for other instances to drop the keys it invalidated' },
    CACHE_WARM_ENABLED: { type: 'boolean', default: cacheDefaults.warmEnabled, description: 'Fill the local tier with the hottest entries from Redis before reporting ready' },
    CACHE_WARM_MAX_ENTRIES: { type: 'integer', default: cacheDefaults.warmMaxEntries, minimum: 0, description: 'Entries warming copies at most (also the hot loaders re-run after a Redis flush)' },
    CACHE_WARM_TIMEOUT_MS: { type: 'integer', default: cacheDefaults.warmTimeoutMs, minimum: 0, description: 'Ms warming (or a re-run after a Redis flush) may take before the instance goes on' },
    CACHE_REFRESH_AHEAD_RATIO: { type: 'number', default: cacheDefaults.refreshAheadRatio, minimum: 0, maximum: 0.9, description: 'Share of its TTL under which one instance reloads a hot entry in the background (0: off)' },
    CACHE_REFRESH_AHEAD_MAX_KEYS: { type: 'integer', default: cacheDefaults.refreshAheadMaxKeys, minimum: 0, description: 'Refresh-ahead covers only this many of the fleet\'s hottest keys' },
    CACHE_REFRESH_AHEAD_CONCURRENCY: { type: 'integer', default: cacheDefaults.refreshAheadConcurrency, minimum: 1, description: 'Refresh-ahead reloads running at once on one instance' },
    CACHE_HOT_KEYS_MAX: { type: 'integer', default: cacheDefaults.hotKeysMax, minimum: 0, description: 'Hot keys counted per instance and kept in Redis, a decaying top-K (0: no tracking)' },
    CACHE_HOT_KEYS_INTERVAL_MS: { type: 'integer', default: cacheDefaults.hotKeysIntervalMs, minimum: 10, description: 'Ms between flushes of hot-key counts to Redis and checks for a Redis flush' }
  }
} as const satisfies ConfigFragment

/** The cache's variables, and the Redis command budget its Redis tier keeps to. */
export type CacheConfig = ConfigOf<typeof cacheConfigFragment> & Pick<RedisConfig, 'REDIS_COMMAND_TIMEOUT_MS'>

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
    warmEnabled: config.CACHE_WARM_ENABLED,
    warmMaxEntries: config.CACHE_WARM_MAX_ENTRIES,
    warmTimeoutMs: config.CACHE_WARM_TIMEOUT_MS,
    refreshAheadRatio: config.CACHE_REFRESH_AHEAD_RATIO,
    refreshAheadMaxKeys: config.CACHE_REFRESH_AHEAD_MAX_KEYS,
    refreshAheadConcurrency: config.CACHE_REFRESH_AHEAD_CONCURRENCY,
    hotKeysMax: config.CACHE_HOT_KEYS_MAX,
    hotKeysIntervalMs: config.CACHE_HOT_KEYS_INTERVAL_MS,
    redisTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS
  }
}
