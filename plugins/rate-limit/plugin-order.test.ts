import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { redisPlugin } from '../redis/index.js'
import { rateLimitPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

test('the rate limiter registered before redis fails ready, naming what to register first', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(rateLimitPlugin, {})
  await app.register(redisPlugin, {})
  await assert.rejects(async () => { await app.ready() }, {
    code: 'CHASSIS_PLUGIN_ORDER',
    message: 'rate-limit was registered before redis: register @lead-chassis/plugins/redis first, or pass redis: false'
  })
})

test('the rate limiter registered after redis counts in Redis', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(redisPlugin, { url: REDIS_URL })
  await app.register(rateLimitPlugin, { prefix: `order-${randomUUID()}:` })
  await app.ready()
  assert.equal(app.rateLimiter.getStats().shared, true)
})

test('redis: false counts in process, whichever comes first', async (t) => {
  for (const redisFirst of [true, false]) {
    const app = Fastify()
    t.after(() => app.close())
    if (redisFirst) await app.register(redisPlugin, { url: REDIS_URL })
    await app.register(rateLimitPlugin, { redis: false })
    if (!redisFirst) await app.register(redisPlugin, { url: REDIS_URL })
    await app.ready()
    assert.equal(app.rateLimiter.getStats().shared, false)
  }
})

test('a redis decorator that is not a Redis client fails the rate limiter\'s registration naming it', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  app.decorate('redis', { host: 'redis.internal' } as never)
  await assert.rejects(async () => { await app.register(rateLimitPlugin, {}) }, { code: 'CHASSIS_DECORATOR_CONFLICT' })
})
