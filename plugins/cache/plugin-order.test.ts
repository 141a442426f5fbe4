import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { redisPlugin } from '../redis/index.js'
import { cachePlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

test('the cache registered before redis fails ready, naming what to register first', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(cachePlugin, {})
  await app.register(redisPlugin, {})
  await assert.rejects(async () => { await app.ready() }, {
    code: 'CHASSIS_PLUGIN_ORDER',
    message: 'cache was registered before redis: register @lead-chassis/plugins/redis first, or pass redis: false'
  })
})

test('the cache registered after redis uses it', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(redisPlugin, { url: REDIS_URL })
  await app.register(cachePlugin, { prefix: `order-${randomUUID()}:` })
  await app.ready()
  assert.equal(await app.cache.ready(5000), true)
  assert.equal(app.cache.getStats().redis.connected, true)
})

test('redis: false keeps the cache local, whichever comes first', async (t) => {
  for (const redisFirst of [true, false]) {
    const app = Fastify()
    t.after(() => app.close())
    if (redisFirst) await app.register(redisPlugin, { url: REDIS_URL })
    await app.register(cachePlugin, { redis: false })
    if (!redisFirst) await app.register(redisPlugin, { url: REDIS_URL })
    await app.ready()
    assert.equal(app.cache.getStats().redis.connected, false)
  }
})

test('a cache with nothing to ask of Redis boots alone', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(cachePlugin, {})
  await app.ready()
  assert.equal(app.cache.getStats().redis.connected, false)
})

// Typed code needs a cast to do this; a JavaScript application, or a library decorating `redis` its own way, does not.
test('a redis decorator that is not a Redis client fails registration naming it, instead of a TypeError inside the cache', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  app.decorate('redis', { host: 'redis.internal' } as never)
  await assert.rejects(async () => { await app.register(cachePlugin, {}) }, {
    code: 'CHASSIS_DECORATOR_CONFLICT',
    message: 'cache found app.redis, which is not an ioredis client as @lead-chassis/plugins/redis adds: rename that decorator, or pass redis: false'
  })
})

test('a redis decorator of the application\'s own added after the cache is not reported as the redis plugin registered late', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(cachePlugin, {})
  app.decorate('redis', { host: 'redis.internal' } as never)
  await app.ready()
  assert.equal(app.cache.getStats().redis.connected, false)
})

test('a manager given with options it would ignore (a ttl, a prefix) is refused at registration, naming them', async (t) => {
  const { createCacheManager } = await import('./index.js')
  const manager = createCacheManager(undefined, {})
  t.after(() => manager.close())
  const app = Fastify()
  t.after(() => app.close())
  await assert.rejects(async () => { await app.register(cachePlugin, { manager, ttl: 5, prefix: 'other:' }) }, {
    code: 'CACHE_INVALID_OPTIONS',
    message: 'Invalid cache options: ttl, prefix cannot be given with manager, which keeps the options it was made with'
  })
})
