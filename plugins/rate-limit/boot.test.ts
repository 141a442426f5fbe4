import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { redisPlugin } from '../redis/index.js'
import { rateLimitPlugin } from './plugin.js'
import { uniqueName } from '../../test/helpers/database.js'
import { freePort } from '../../test/helpers/ports.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function boot (url: string, prefix = `${uniqueName('rl')}:`): Promise<ReturnType<typeof Fastify>> {
  const app = Fastify({ logger: false })
  await app.register(redisPlugin, { url, commandTimeoutMs: 100 })
  app.redis?.on('error', () => {})
  await app.register(rateLimitPlugin, { global: { name: 'boot', limit: 5, windowMs: 60000 }, prefix })
  app.get('/hello', async () => 'hi')
  await app.ready()
  return app
}

test('a freshly started instance decides its first request in Redis, not in the fallback, and has announced itself', async (t) => {
  const prefix = `${uniqueName('rl')}:`
  const app = await boot(REDIS_URL, prefix)
  t.after(() => app.close())
  assert.equal(await app.redis?.zcard(`${prefix}instances`), 1)
  const first = await app.inject('/hello')
  assert.equal(first.statusCode, 200)
  assert.equal(app.rateLimiter.getStats().policies.boot?.fallback, 0)
  assert.equal(app.rateLimiter.getStats().breaker, 'closed')
})

test('an unreachable Redis does not hold up boot', async (t) => {
  const started = performance.now()
  const app = await boot(`redis://127.0.0.1:${await freePort()}`)
  t.after(() => app.close())
  assert.ok(performance.now() - started < 2000, `booted in ${(performance.now() - started).toFixed(0)} ms`)
  assert.equal((await app.inject('/hello')).statusCode, 200)
  assert.equal(app.rateLimiter.getStats().policies.boot?.fallback, 1)
})
