import type { Registrar } from '../../plugins/chassis/index.js'
import { chassisConfigFragment, type ChassisConfig, type ConfigFragment } from '../../plugins/chassis/index.js'
import { dbPoolConfigFragment, dbPoolPlugin, poolOptionsFromConfig, type ConnectionPool, type DbPoolConfig } from '../../plugins/db-pool/index.js'
import { redisConfigFragment, redisPlugin, type RedisClient, type RedisConfig } from '../../plugins/redis/index.js'
import { cacheConfigFragment, cacheOptionsFromConfig, cachePlugin, type CacheConfig } from '../../plugins/cache/index.js'
import { cidrMatcher, clientAddressKey, rateLimitConfigFragment, rateLimitOptionsFromConfig, rateLimitPlugin, type RateLimitConfig } from '../../plugins/rate-limit/index.js'
import { apiKeysConfigFragment, apiKeysPlugin, type ApiKeysConfig } from '../../plugins/api-keys/index.js'
import { metricsPlugin, queryStatsConfigFragment, queryStatsPlugin, type QueryStatsConfig } from '../../plugins/telemetry/index.js'
import { canonicalLeadIdRoutes } from '../domain/lead-id.js'

/** What every service of the platform is configured with, before its own variables. */
export type PlatformConfig = ChassisConfig & DbPoolConfig & RedisConfig & CacheConfig & RateLimitConfig & ApiKeysConfig & QueryStatsConfig

export const platformConfigFragments: ConfigFragment[] = [chassisConfigFragment, dbPoolConfigFragment, redisConfigFragment, cacheConfigFragment, rateLimitConfigFragment, apiKeysConfigFragment, queryStatsConfigFragment]

export interface PlatformOptions {
  /** A pool to share instead of opening one (tests); it is not closed with the app. */
  pool?: ConnectionPool
  /** A Redis client to use instead of one made from REDIS_URL; it is not closed with the app. */
  redis?: RedisClient
  /**
   * The app is built only to describe its routes (`npm run openapi`) and never serves a request: nothing that must
   * reach the database at boot (the key-change listener) is started. @default false
   */
  describeOnly?: boolean
}

/**
 * The shared plugins every service registers, in order: metrics, query statistics, the pool, Redis (or none), the
 * cache, API keys and the rate limiter, and the hook that makes lead ids canonical on every route. A caller with a valid key gets the apiKey preset, counted per key; everyone
 * else the default, per address; other services of the platform (service key) and the allowlisted CIDRs are never
 * limited. Before that, each key lookup is charged to the caller's address (API_KEY_LOOKUP_LIMIT), whether or not
 * rate limiting is on.
 */
export function platformPlugins (service: string, config: PlatformConfig, options: PlatformOptions = {}): Registrar[] {
  const allowListed = cidrMatcher(config.RATE_LIMIT_ALLOWLIST.split(','))
  return [
    (app) => app.addHook('onRoute', canonicalLeadIdRoutes),
    (app) => app.register(metricsPlugin, { service }),
    (app) => app.register(queryStatsPlugin, { slowThresholdMs: config.SLOW_QUERY_THRESHOLD_MS, enabled: config.QUERY_STATS_ENABLED }),
    (app) => app.register(dbPoolPlugin, options.pool ? { pool: options.pool } : poolOptionsFromConfig(config)),
    (app) => app.register(redisPlugin, options.redis
      ? { client: options.redis }
      : { ...(config.REDIS_URL ? { url: config.REDIS_URL } : {}), cluster: config.REDIS_CLUSTER, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS }),
    (app) => app.register(cachePlugin, cacheOptionsFromConfig(config)),
    (app) => app.register(apiKeysPlugin, {
      followChanges: options.describeOnly !== true,
      cacheTtl: config.API_KEY_CACHE_TTL,
      serviceKey: config.SERVICE_API_KEY,
      lookupBudget: config.API_KEY_LOOKUP_LIMIT > 0 && {
        limit: config.API_KEY_LOOKUP_LIMIT,
        windowMs: config.API_KEY_LOOKUP_WINDOW_MS,
        prefix: config.RATE_LIMIT_PREFIX,
        timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        exempt: (request) => allowListed(request.ip)
      }
    }),
    (app) => config.RATE_LIMIT_ENABLED && app.register(rateLimitPlugin, {
      ...rateLimitOptionsFromConfig(config),
      allowList: (request) => request.internalService === true || allowListed(request.ip),
      keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : clientAddressKey(request.ip)),
      globalFor: (request) => (request.apiKey ? 'apiKey' : undefined)
    })
  ]
}
