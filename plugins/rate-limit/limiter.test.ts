import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { createRedisClient } from '../redis/index.js'
import { RateLimiter } from './rate-limiter.js'
import { MemoryStore } from './memory-store.js'
import type { RateLimitStore, StoreCheck } from './store.js'
import { uniqueName } from '../../test/helpers/database.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: Redis[] = []
after(async () => { await Promise.all(clients.map((c) => c.quit())) })

function client (): Redis {
  const c = new Redis(REDIS_URL, { enableAutoPipelining: true })
  clients.push(c)
  return c
}

test('three instances sharing one Redis, 1000 concurrent requests against 100: exactly 100 admitted', async () => {
  const prefix = `${uniqueName('rl')}:`
  const limiters = [0, 1, 2].map(() => new RateLimiter(client(), { prefix, timeoutMs: 2000 }))
  const policy = { name: 'exact', limit: 100, windowMs: 60000 }
  const decisions = await Promise.all(Array.from({ length: 1000 }, (_, i) => (limiters[i % 3] as RateLimiter).check('client-1', [policy])))
  assert.equal(decisions.filter((d) => d.allowed).length, 100)
  assert.ok(decisions.filter((d) => !d.allowed).every((d) => (d.binding?.retryAfterMs ?? 0) > 0))
  assert.equal(await (limiters[0] as RateLimiter).getRemainingRequests('client-1', policy), 0)
})

test('a key known to be over its limit is answered from memory until it frees', async () => {
  let calls = 0
  const inner = new MemoryStore()
  const counting: RateLimitStore = { check: async (c: StoreCheck) => { calls++; return inner.check(c) } }
  const limiter = new RateLimiter(undefined, { store: counting })
  const policy = { name: 'fast', limit: 3, windowMs: 300 }
  for (let i = 0; i < 3; i++) assert.equal((await limiter.check('k', [policy])).allowed, true)
  assert.equal((await limiter.check('k', [policy])).allowed, false)
  const before = calls
  for (let i = 0; i < 100; i++) {
    const d = await limiter.check('k', [policy])
    assert.equal(d.allowed, false)
    assert.equal(d.source, 'fast-path')
  }
  assert.equal(calls, before, 'a flood costs the store nothing')
  await sleep(320)
  assert.equal((await limiter.check('k', [policy])).allowed, true, 'no false refusal once the window frees')
})

test('getRemainingRequests does not consume', async () => {
  const limiter = new RateLimiter(client(), { prefix: `${uniqueName('rl')}:` })
  const policy = { name: 'peek', limit: 5, windowMs: 60000 }
  await limiter.check('ip', [policy])
  assert.equal(await limiter.getRemainingRequests('ip', policy), 4)
  assert.equal(await limiter.getRemainingRequests('ip', policy), 4)
})

test('a shadow policy reports but never refuses, and does not hold back the enforced count', async () => {
  const limiter = new RateLimiter(client(), { prefix: `${uniqueName('rl')}:` })
  const enforced = { name: 'main', limit: 10, windowMs: 60000 }
  const shadow = { name: 'trial', limit: 2, windowMs: 60000, shadow: true }
  const decisions = []
  for (let i = 0; i < 5; i++) decisions.push(await limiter.check('c', [enforced, shadow]))
  assert.ok(decisions.every((d) => d.allowed))
  assert.equal(decisions.filter((d) => d.shadowLimited).length, 3)
  assert.equal(await limiter.getRemainingRequests('c', enforced), 5)
  const stats = limiter.getStats().policies
  assert.equal(stats.trial?.shadowLimited, 3)
  assert.equal(stats.main?.allowed, 5)
})

test('Redis stopped or hung: decisions within the budget, open policies fall back per instance, closed ones refuse; recovery is automatic', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const c = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  c.on('error', () => {})
  t.after(() => c.disconnect())
  await new Promise((resolve) => c.once('ready', resolve))
  const limiter = new RateLimiter(c, { timeoutMs: 50, breakerThreshold: 2, breakerCooldownMs: 200 })
  const open = { name: 'open', limit: 3, windowMs: 60000 }
  const closed = { name: 'closed', limit: 3, windowMs: 60000, onStoreFailure: 'closed' as const }
  assert.equal((await limiter.check('a', [open])).source, 'store')

  for (const outage of ['stop', 'pause'] as const) {
    if (outage === 'stop') await redis.stop()
    else redis.pause()
    const times: number[] = []
    const decisions = []
    for (let i = 0; i < 6; i++) {
      const started = performance.now()
      decisions.push(await limiter.check(`${outage}-client`, [open]))
      times.push(performance.now() - started)
    }
    assert.ok(Math.max(...times) < 150, `${outage}: slowest ${Math.max(...times).toFixed(0)} ms`)
    assert.ok(decisions.every((d) => d.source === 'fallback' || d.source === 'fast-path'), decisions.map((d) => d.source).join())
    assert.equal(decisions.filter((d) => d.allowed).length, 3, 'the in-process fallback still limits')
    const refused = await limiter.check(`${outage}-closed`, [closed])
    assert.equal(refused.allowed, false)
    assert.equal(refused.source, 'closed')
    if (outage === 'stop') await redis.start()
    else redis.resume()
    const recoverStart = Date.now()
    let d = await limiter.check(`${outage}-after`, [open])
    while (d.source !== 'store' && Date.now() - recoverStart < 5000) {
      await sleep(50)
      d = await limiter.check(`${outage}-after-${Date.now()}`, [open])
    }
    assert.equal(d.source, 'store', `${outage}: recovered`)
  }
})

test('a NOSCRIPT after a Redis restart is handled (the script is loaded again)', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const c = new Redis(redis.url)
  c.on('error', () => {})
  t.after(() => c.disconnect())
  const limiter = new RateLimiter(c, { timeoutMs: 1000 })
  const p = { name: 'ns', limit: 5, windowMs: 60000 }
  assert.equal((await limiter.check('x', [p])).source, 'store')
  await c.script('FLUSH')
  const d = await limiter.check('x', [p])
  assert.equal(d.source, 'store')
  assert.equal(d.binding?.remaining, 3)
})
