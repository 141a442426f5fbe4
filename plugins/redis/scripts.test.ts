import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { cachePlugin } from '../cache/index.js'
import { rateLimitPlugin } from '../rate-limit/index.js'
import { closeRedisClient, createRedisClient, defineScript, redisPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

test('a script defined while an auto-pipeline of its client waits to be sent runs in it, instead of ending the process with an uncaught TypeError', async (t) => {
  const client = createRedisClient({ url: REDIS_URL, autoPipelining: true })
  t.after(() => closeRedisClient(client))
  await once(client, 'ready')
  const name = `chassisTestEcho${randomUUID().replaceAll('-', '')}`
  const key = `scripts-test:${randomUUID()}`
  // The GET opens an auto-pipeline, flushed on the next setImmediate; the script is defined while it waits.
  const first = client.get(key)
  // A script new to Redis (its text is unique), so the pipeline also sends its body, not only its sha.
  defineScript(client, name, { numberOfKeys: 1, lua: `return KEYS[1] .. ARGV[1] -- ${name}` })
  const call = (client as unknown as Record<string, (key: string, arg: string) => Promise<string>>)[name]
  assert.equal(typeof call, 'function')
  const second = call?.call(client, key, '!')
  assert.deepEqual(await Promise.all([first, second]), [null, `${key}!`])
  // And later, in pipelines made after it was defined.
  assert.deepEqual(await Promise.all([client.get(key), call?.call(client, key, '?')]), [null, `${key}?`])
})

test('a service handed an auto-pipelined Redis client already in use starts, limits and caches: its plugins define their scripts while other commands wait to be sent', async (t) => {
  const prefix = `scripts-test:${randomUUID()}:`
  const client = createRedisClient({ url: REDIS_URL, autoPipelining: true })
  await once(client, 'ready')
  // The rest of the process uses the client too: a command waits to be sent at every turn of the event loop.
  let traffic = true
  const busy = (): void => { if (traffic) void client.get(`${prefix}other`).catch(() => {}).then(busy) }
  busy()
  const app = Fastify({ logger: false })
  t.after(async () => {
    traffic = false
    // Not QUIT: without the fix, the client is stuck behind a pipeline ioredis never sends.
    client.disconnect()
    await app.close()
    const cleaner = createRedisClient({ url: REDIS_URL })
    await once(cleaner, 'ready')
    const keys = await cleaner.keys(`${prefix}*`)
    if (keys.length > 0) await cleaner.del(...keys)
    await closeRedisClient(cleaner)
  })
  await app.register(redisPlugin, { client })
  await app.register(rateLimitPlugin, { global: { name: 'ap', limit: 1000, windowMs: 60000 }, prefix: `${prefix}rl:` })
  await app.register(cachePlugin, { prefix: `${prefix}cache:`, localEnabled: false })
  let loads = 0
  app.get('/thing', async () => app.cache.getOrSet('thing', async () => ({ loads: ++loads }), { ttl: 60 }))
  await app.ready()
  // A burst at once, then another once the first filled the cache.
  const answers = await Promise.all(Array.from({ length: 40 }, () => app.inject('/thing')))
  answers.push(...await Promise.all(Array.from({ length: 20 }, () => app.inject('/thing'))))
  assert.deepEqual(answers.map((r) => r.statusCode), answers.map(() => 200))
  assert.deepEqual(new Set(answers.map((r) => r.json<{ loads: number }>().loads)), new Set([1]))
  assert.equal(app.rateLimiter.getStats().policies.ap?.fallback, 0, 'every request was decided by the Redis store')
  assert.ok(app.cache.getStats().redis.hits > 0, 'later requests were answered from Redis')
})
