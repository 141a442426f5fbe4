// A service of its own built from the packed chassis: PostgreSQL through the two-tier cache, API keys with
// scopes, a rate-limited route, Prometheus metrics and health probes, configured from the environment.
import { buildService, chassisConfigFragment, composeSchema, HttpError, loadConfig, runService, type ChassisConfig } from '@lead-chassis/plugins/chassis'
import { dbPoolConfigFragment, dbPoolPlugin, poolOptionsFromConfig, type DbPoolConfig } from '@lead-chassis/plugins/db-pool'
import { redisConfigFragment, redisPlugin, type RedisConfig } from '@lead-chassis/plugins/redis'
import { cacheConfigFragment, cacheOptionsFromConfig, cachePlugin, sendCached, type CacheConfig } from '@lead-chassis/plugins/cache'
import { rateLimitConfigFragment, rateLimitOptionsFromConfig, rateLimitPlugin, type RateLimitConfig } from '@lead-chassis/plugins/rate-limit'
import { apiKeysConfigFragment, apiKeysPlugin, type ApiKeysConfig } from '@lead-chassis/plugins/api-keys'
import { metricsPlugin } from '@lead-chassis/plugins/telemetry'

interface Config extends ChassisConfig, DbPoolConfig, RedisConfig, CacheConfig, RateLimitConfig, ApiKeysConfig {}

// DATABASE_URL, REDIS_URL, PORT and every other setting, validated once (CHASSIS_CONFIG_INVALID names each problem).
const config = loadConfig<Config>(composeSchema(chassisConfigFragment, dbPoolConfigFragment, redisConfigFragment,
  cacheConfigFragment, rateLimitConfigFragment, apiKeysConfigFragment))

// buildService adds request ids, JSON errors, /health/live, /health/ready and load shedding.
const app = await buildService({
  name: 'quickstart',
  config,
  plugins: [
    (app) => app.register(metricsPlugin, { service: 'quickstart' }),              // GET /metrics
    (app) => app.register(dbPoolPlugin, poolOptionsFromConfig(config)),           // app.db, a readiness check
    (app) => app.register(redisPlugin, { url: config.REDIS_URL }),                // app.redis (none without a URL)
    (app) => app.register(cachePlugin, cacheOptionsFromConfig(config)),           // app.cache: local tier + Redis
    (app) => app.register(apiKeysPlugin, { cacheTtl: config.API_KEY_CACHE_TTL }), // x-api-key, requiredScope
    (app) => app.register(rateLimitPlugin, rateLimitOptionsFromConfig(config))    // 429 with Retry-After
  ],
  routes: [(app) => app.get('/products/:id', {
    config: { requiredScope: 'products:read', rateLimit: 'strict' },              // 10 a minute per address
    schema: { params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] } }
  }, (request, reply) => {
    const { id } = request.params as { id: number }
    return sendCached(app.cache, request, reply, { key: `product:${id}`, ttl: 60 }, async () => {
      const { rows } = await app.db.query('SELECT id, name, price_cents FROM products WHERE id = $1', [id])
      if (rows.length === 0) throw new HttpError(404, 'PRODUCT_NOT_FOUND', `There is no product ${id}`)
      return rows[0]
    })
  })]
})
await runService(app, config)                                                     // listens; SIGTERM drains
