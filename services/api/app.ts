import type { FastifyInstance } from 'fastify'
import { buildService, type ServiceDefinition } from '../../plugins/chassis/index.js'
import { dbPoolPlugin, poolOptionsFromConfig, type ConnectionPool } from '../../plugins/db-pool/index.js'
import { redisPlugin, type RedisClient } from '../../plugins/redis/index.js'
import { cacheOptionsFromConfig, cachePlugin } from '../../plugins/cache/index.js'
import { cidrMatcher, clientAddressKey, rateLimitOptionsFromConfig, rateLimitPlugin } from '../../plugins/rate-limit/index.js'
import { apiKeysPlugin } from '../../plugins/api-keys/index.js'
import { metricsPlugin, queryStatsPlugin } from '../../plugins/telemetry/index.js'
import type { ApiConfig } from './config.js'
import { leadRoutes } from './routes/leads.js'
import { adminRoutes } from './routes/admin.js'

export interface BuildApiOptions {
  logger?: ServiceDefinition['logger']
  /** A pool to share instead of opening one (tests); it is not closed with the app. */
  pool?: ConnectionPool
  /** A Redis client to use instead of one made from REDIS_URL; it is not closed with the app. */
  redis?: RedisClient
}

/** The api service, not listening: use `inject` in tests, `runService` in the entry. */
export async function buildApp (config: ApiConfig, options: BuildApiOptions = {}): Promise<FastifyInstance> {
  const allowListed = cidrMatcher(config.RATE_LIMIT_ALLOWLIST.split(','))
  return buildService({
    name: 'api',
    config,
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    plugins: [
      (app) => app.register(metricsPlugin, { service: 'api' }),
      (app) => app.register(queryStatsPlugin, { slowThresholdMs: config.SLOW_QUERY_THRESHOLD_MS, enabled: config.QUERY_STATS_ENABLED }),
      (app) => app.register(dbPoolPlugin, options.pool ? { pool: options.pool } : poolOptionsFromConfig(config)),
      (app) => app.register(redisPlugin, options.redis
        ? { client: options.redis }
        : { ...(config.REDIS_URL ? { url: config.REDIS_URL } : {}), cluster: config.REDIS_CLUSTER, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS }),
      (app) => app.register(cachePlugin, cacheOptionsFromConfig(config)),
      (app) => app.register(apiKeysPlugin, { cacheTtl: config.API_KEY_CACHE_TTL, serviceKey: config.SERVICE_API_KEY }),
      // A caller with a valid key gets the apiKey preset, counted per key; everyone else the default, per address.
      (app) => config.RATE_LIMIT_ENABLED && app.register(rateLimitPlugin, {
        ...rateLimitOptionsFromConfig(config),
        // Other services of the platform (service key) and the configured CIDRs are never limited.
        allowList: (request) => request.internalService === true || allowListed(request.ip),
        keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : clientAddressKey(request.ip)),
        globalFor: (request) => (request.apiKey ? 'apiKey' : undefined)
      })
    ],
    routes: [
      (app) => app.register(leadRoutes, { prefix: '/api/v1/leads', bodyLimit: config.LEAD_BODY_LIMIT_BYTES, cache: config.CACHE_ENABLED }),
      (app) => app.register(adminRoutes, { prefix: '/api/v1/admin' })
    ]
  })
}
