import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { cachePlugin } from '../cache/index.js'
import { dbPoolPlugin } from '../db-pool/index.js'
import { redisPlugin } from '../redis/index.js'
import { TEST_DATABASE_URL } from '../../test/helpers/database.js'
import { apiKeysPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const pool = { connectionString: TEST_DATABASE_URL, name: 'order', min: 1 }

test('api-keys needs db-pool registered before it', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await assert.rejects(async () => { await app.register(apiKeysPlugin, { followChanges: false }) }, /db-pool/)
})

for (const dependency of ['cache', 'redis'] as const) {
  test(`api-keys registered before ${dependency} fails ready, naming what to register first`, async (t) => {
    const app = Fastify()
    t.after(() => app.close())
    await app.register(dbPoolPlugin, pool)
    await app.register(apiKeysPlugin, { followChanges: false })
    if (dependency === 'cache') await app.register(cachePlugin, {})
    else await app.register(redisPlugin, {})
    await assert.rejects(async () => { await app.ready() }, {
      code: 'CHASSIS_PLUGIN_ORDER',
      message: `api-keys was registered before ${dependency}: register @lead-chassis/plugins/${dependency} first, or pass ${dependency}: false`
    })
  })
}

test('api-keys after redis and the cache boots; cache: false and redis: false boot with them registered after', async (t) => {
  const inOrder = Fastify()
  t.after(() => inOrder.close())
  await inOrder.register(dbPoolPlugin, pool)
  await inOrder.register(redisPlugin, { url: REDIS_URL })
  await inOrder.register(cachePlugin, {})
  await inOrder.register(apiKeysPlugin, { followChanges: false })
  await inOrder.ready()

  const optedOut = Fastify()
  t.after(() => optedOut.close())
  await optedOut.register(dbPoolPlugin, pool)
  await optedOut.register(apiKeysPlugin, { followChanges: false, cache: false, redis: false })
  await optedOut.register(redisPlugin, { url: REDIS_URL })
  await optedOut.register(cachePlugin, {})
  await optedOut.ready()
})

test('with the lookup budget off, api-keys does not ask for redis', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(dbPoolPlugin, pool)
  await app.register(apiKeysPlugin, { followChanges: false, cache: false, lookupBudget: false })
  await app.register(redisPlugin, {})
  await app.ready()
})

test('a cache decorator of another library (not a CacheManager) fails the api-keys registration naming it, instead of failing on the first request', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(dbPoolPlugin, pool)
  // What @fastify/caching decorates `cache` with: an abstract-cache client, without getOrSet, peek or deletePattern.
  app.decorate('cache', { get: async () => null, set: async () => {} } as never)
  await assert.rejects(async () => { await app.register(apiKeysPlugin, { followChanges: false }) }, {
    code: 'CHASSIS_DECORATOR_CONFLICT',
    message: 'api-keys found app.cache, which is not a CacheManager as @lead-chassis/plugins/cache adds: rename that decorator, or pass cache: false'
  })
})
