import type { FastifyRequest } from 'fastify'
import type { Registrar } from '@lead-chassis/plugins/chassis'
import { chassisConfigFragment, type ChassisConfig, type ConfigFragment } from '@lead-chassis/plugins/chassis'
import { dbPoolConfigFragment, dbPoolPlugin, poolOptionsFromConfig, type ConnectionPool, type DbPoolConfig } from '@lead-chassis/plugins/db-pool'
import { redisConfigFragment, redisPlugin, type RedisClient, type RedisConfig } from '@lead-chassis/plugins/redis'
import { cacheConfigFragment, cacheOptionsFromConfig, cachePlugin, type CacheConfig } from '@lead-chassis/plugins/cache'
import { cidrMatcher, clientAddressKey, rateLimitConfigFragment, rateLimitOptionsFromConfig, rateLimitPlugin, type RateLimitConfig } from '@lead-chassis/plugins/rate-limit'
import { apiKeysConfigFragment, apiKeysPlugin, type ApiKeysConfig } from '@lead-chassis/plugins/api-keys'
import { loadQueryParser, metricsPlugin, queryStatsConfigFragment, queryStatsPlugin, type QueryStatsConfig } from '@lead-chassis/plugins/telemetry'
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
 * What the platform's plugins load once per process, loaded before the app is built. PostgreSQL's parser
 * (WebAssembly, for the query statistics) loaded while the app registers can leave Node's `process.nextTick` on V8's
 * slow path for the life of the process (`npm run bench:next-tick`; docs/benchmarks.md, Cache).
 */
export async function preparePlatform (config: PlatformConfig): Promise<void> {
  if (config.QUERY_STATS_ENABLED) await loadQueryParser()
}

/**
 * The shared plugins every service registers, in order: metrics, query statistics, the pool, Redis (or none), the
 * cache, API keys and the rate limiter, and the hook that makes lead ids canonical on every route. A caller with a valid key gets the apiKey preset, counted per key; everyone
 * else the default, per address; other services of the platform (service key) and the allowlisted CIDRs are never
 * limited. Before that, each key lookup is charged to the caller's address (API_KEY_LOOKUP_LIMIT), whether or not
 * rate limiting is on.
 */
export function platformPlugins (service: string, config: PlatformConfig, options: PlatformOptions = {}): Registrar[] {
  const allowList = config.RATE_LIMIT_ALLOWLIST.split(',')
  const matcher = cidrMatcher(allowList)
  // Behind a trusted proxy `request.ip` parses X-Forwarded-For on every read: with no CIDR listed (as shipped) the
  // address is not asked for.
  const allowListed = allowList.some((cidr) => cidr.trim() !== '') ? (request: FastifyRequest) => matcher(request.ip) : () => false
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
      previousServiceKey: config.SERVICE_API_KEY_PREVIOUS,
      lookupBudget: config.API_KEY_LOOKUP_LIMIT > 0 && {
        limit: config.API_KEY_LOOKUP_LIMIT,
        windowMs: config.API_KEY_LOOKUP_WINDOW_MS,
        prefix: config.RATE_LIMIT_PREFIX,
        timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        exempt: allowListed
      }
    }),
    (app) => config.RATE_LIMIT_ENABLED && app.register(rateLimitPlugin, {
      ...rateLimitOptionsFromConfig(config),
      allowList: (request) => request.internalService === true || allowListed(request),
      keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : clientAddressKey(request.ip)),
      globalFor: (request) => (request.apiKey ? 'apiKey' : undefined),
      globalForPolicies: []
    })
  ]
}
