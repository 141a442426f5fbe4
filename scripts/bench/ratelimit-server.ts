import Fastify, { type FastifyRequest } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { rateLimitPlugin, type RateLimitHeaders } from '@lead-chassis/plugins/rate-limit'

// One route, three ways: no limiter, ours over Redis, @fastify/rate-limit over Redis. Same key, same limit.
const limiter = process.env.BENCH_LIMITER ?? 'none'
const limit = Number(process.env.BENCH_LIMIT ?? 1_000_000)
const windowMs = Number(process.env.BENCH_WINDOW_MS ?? 10_000)
const keyOf = (req: FastifyRequest): string => String(req.headers['x-client'] ?? req.ip)
const app = Fastify({ logger: false })
let redis: Redis | undefined
if (limiter === 'ours') {
  redis = createRedisClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', commandTimeoutMs: 1000, autoPipelining: process.env.BENCH_AUTOPIPELINING === '1' }) as Redis
  app.decorate('redis', redis)
  // The same three fields @fastify/rate-limit sends by default (X-RateLimit-Limit/Remaining/Reset), so both answer
  // alike; BENCH_HEADERS=both measures ours with the draft's two fields as well (its default).
  const headers = (process.env.BENCH_HEADERS ?? 'x-ratelimit') as RateLimitHeaders
  await app.register(rateLimitPlugin, { global: { name: 'bench', limit, windowMs }, keyGenerator: keyOf, prefix: 'bench-ours:', timeoutMs: 1000, headers })
} else if (limiter === 'fastify') {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { connectTimeout: 500, maxRetriesPerRequest: 1, enableAutoPipelining: process.env.BENCH_AUTOPIPELINING === '1' })
  await app.register(fastifyRateLimit, { max: limit, timeWindow: windowMs, redis, keyGenerator: keyOf, nameSpace: 'bench-fastify:' })
}
app.get('/health/ready', { config: { rateLimit: false } }, async () => ({ status: 'ok' }))
app.get('/hello', async () => ({ hello: 'world' }))
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(() => { redis?.disconnect(); process.exit(0) }) })
