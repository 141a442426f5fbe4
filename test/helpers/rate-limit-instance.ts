import Fastify from 'fastify'
import { redisPlugin } from '@lead-chassis/plugins/redis'
import { rateLimitOptionsFromConfig, rateLimitPlugin } from '@lead-chassis/plugins/rate-limit'

// One service instance as the platform composes it (the redis plugin, then the rate limiter from its config), with
// the limit keyed by a header so that a burst from one test process counts as one client. Started fresh by
// rate-limit-fleet.ts for each run; logs go to stdout as JSON lines.
const env = process.env
const app = Fastify({ logger: { level: 'info' } })
await app.register(redisPlugin, { url: env.REDIS_URL ?? 'redis://127.0.0.1:6379', commandTimeoutMs: Number(env.REDIS_COMMAND_TIMEOUT_MS ?? 100) })
await app.register(rateLimitPlugin, {
  ...rateLimitOptionsFromConfig({
    RATE_LIMIT_ENABLED: true,
    RATE_LIMIT_WINDOW_MS: 60000,
    RATE_LIMIT_MAX_REQUESTS: Number(env.LIMIT ?? 100),
    RATE_LIMIT_API_KEY_MAX_REQUESTS: 1000,
    RATE_LIMIT_PREFIX: env.RATE_LIMIT_PREFIX ?? 'rl:',
    RATE_LIMIT_ALLOWLIST: '',
    RATE_LIMIT_ON_STORE_FAILURE: 'open',
    REDIS_COMMAND_TIMEOUT_MS: Number(env.REDIS_COMMAND_TIMEOUT_MS ?? 100)
  }),
  keyGenerator: (request) => String(request.headers['x-client'] ?? request.ip)
})
app.get('/hello', async () => ({ hello: 'world' }))
app.get('/stats', { config: { rateLimit: false } }, async () => app.rateLimiter.getStats())
await app.listen({ host: '127.0.0.1', port: Number(env.PORT ?? 0) })
process.send?.({ ready: true })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
