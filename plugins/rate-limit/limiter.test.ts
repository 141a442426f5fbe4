import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { budgetHardCapMs, createRedisClient } from '../redis/index.js'
import { RateLimiter, type FallbackLog } from './rate-limiter.js'
import { MemoryStore } from './memory-store.js'
import type { RateLimitStore, StoreCheck } from './store.js'
import { uniqueName } from '../../test/helpers/database.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { blockEventLoop } from '../../test/helpers/event-loop.js'
import { eventually } from '../../test/helpers/eventually.js'
import { startFaultProxy } from '../../test/helpers/fault-proxy.js'

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

test('a cost that is not a number or is infinite is refused, a negative one counted as one request and a fraction rounded up, in Redis and in memory: a cost function fed by a caller buys no uncounted requests', async () => {
  const policy = { name: 'cost', limit: 3, windowMs: 60000 }
  for (const limiter of [new RateLimiter(client(), { prefix: `${uniqueName('rl')}:` }), new RateLimiter(undefined)]) {
    for (const cost of [-5, -Number.MAX_VALUE, Number.NEGATIVE_INFINITY]) {
      const admitted = []
      for (let i = 0; i < 5; i++) admitted.push((await limiter.check(`negative-${String(cost)}`, [policy], cost)).allowed)
      assert.deepEqual(admitted, [true, true, true, false, false], `cost ${cost}`)
    }
    for (const cost of [Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_VALUE * 2]) {
      const decision = await limiter.check(`unbounded-${String(cost)}`, [policy], cost)
      assert.equal(decision.allowed, false, `cost ${cost}`)
      assert.equal((await limiter.check(`unbounded-${String(cost)}`, [policy])).allowed, true, 'and it counted nothing')
    }
    const fractions = []
    for (let i = 0; i < 4; i++) fractions.push((await limiter.check('fractions', [policy], 0.4)).allowed)
    assert.deepEqual(fractions, [true, true, true, false], 'each 0.4 counted one')
  }
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
    // The budget stretches while the process runs late (a busy machine), never past its hard cap.
    assert.ok(Math.max(...times) < budgetHardCapMs(50), `${outage}: slowest ${Math.max(...times).toFixed(0)} ms`)
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

test('one hung script call counts once against the breaker, however many decisions it carried', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const c = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  c.on('error', () => {})
  t.after(() => c.disconnect())
  await new Promise((resolve) => c.once('ready', resolve))
  const limiter = new RateLimiter(c, { timeoutMs: 50, breakerThreshold: 5, breakerCooldownMs: 60_000, prefix: `${uniqueName('rl')}:` })
  t.after(() => limiter.close())
  const policy = { name: 'burst', limit: 1000, windowMs: 60000 }
  assert.equal((await limiter.check('a', [policy])).source, 'store')
  redis.pause()
  t.after(() => { redis.resume() })
  // Forty requests of one turn are one script call: its timeout is one failure, not forty, so a single Redis stall
  // does not open the breaker and send the next minute of traffic to the fallback.
  const started = performance.now()
  const decisions = await Promise.all(Array.from({ length: 40 }, (_, i) => limiter.check(`client-${i}`, [policy])))
  assert.ok(performance.now() - started < budgetHardCapMs(50), 'every decision within the budget')
  assert.deepEqual(new Set(decisions.map((d) => d.source)), new Set(['fallback']))
  assert.equal(limiter.getStats().breaker, 'closed')
  redis.resume()
  await eventually(async () => (await limiter.check('b', [policy])).source === 'store', 'back on the store')
})

/** A limiter on a Redis of the test's own, which the test may pause (SIGSTOP); no heartbeat falls in a test's stall. */
async function limiterOnPrivateRedis (t: { after: (fn: () => unknown) => void }, breakerThreshold: number) {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const c = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  c.on('error', () => {})
  t.after(() => c.disconnect())
  const limiter = new RateLimiter(c, { timeoutMs: 50, breakerThreshold, breakerCooldownMs: 60_000, presenceIntervalMs: 600_000, prefix: `${uniqueName('rl')}:` })
  t.after(() => limiter.close())
  await limiter.ready()
  return { redis, limiter }
}

test('one Redis stall during a turn of 1,000 requests does not open the breaker', async (t) => {
  const { redis, limiter } = await limiterOnPrivateRedis(t, 5)
  const policy = { name: 'turn', limit: 1000, windowMs: 60000 }
  assert.equal((await limiter.check('a', [policy])).source, 'store')
  redis.pause()
  t.after(() => { redis.resume() })
  // 1,000 requests of one turn are 16 script calls, all in flight when Redis stalls: their 16 timeouts are one
  // stall, one failure, not 16 (which opened a breaker of threshold 5 and sent the next minute to the fallback).
  const decisions = await Promise.all(Array.from({ length: 1000 }, (_, i) => limiter.check(`client-${i}`, [policy])))
  assert.deepEqual(new Set(decisions.map((d) => d.source)), new Set(['fallback']))
  assert.equal(limiter.getStats().breaker, 'closed')
  redis.resume()
  await eventually(async () => (await limiter.check('b', [policy])).source === 'store', 'back on the store')
})

test('a Redis that stays stalled still opens the breaker after threshold waves', async (t) => {
  const { redis, limiter } = await limiterOnPrivateRedis(t, 3)
  const policy = { name: 'waves', limit: 1000, windowMs: 60000 }
  assert.equal((await limiter.check('a', [policy])).source, 'store')
  redis.pause()
  t.after(() => { redis.resume() })
  // Each wave starts after the previous one's failure was counted: a stall that outlasts it is a stall again.
  for (let wave = 1; wave <= 3; wave++) {
    const decisions = await Promise.all(Array.from({ length: 200 }, (_, i) => limiter.check(`wave-${wave}-${i}`, [policy])))
    assert.deepEqual(new Set(decisions.map((d) => d.source)), new Set(['fallback']))
    assert.equal(limiter.getStats().breaker, wave < 3 ? 'closed' : 'open', `after wave ${wave}`)
  }
  assert.equal((await limiter.check('shed', [policy])).source, 'fallback')
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

test('a store reply that arrived while the event loop was blocked past the budget is decided by the store, not the fallback', async () => {
  const c = createRedisClient({ url: REDIS_URL, commandTimeoutMs: 50 })
  await new Promise((resolve) => c.once('ready', resolve))
  const limiter = new RateLimiter(c, { prefix: `${uniqueName('rl')}:`, timeoutMs: 50 })
  try {
    const policy = { name: 'blocked', limit: 10, windowMs: 60000 }
    const decisions = Promise.all(Array.from({ length: 30 }, () => limiter.check('busy-client', [policy])))
    // After the store's batch is written (it is sent in the check phase), the loop is kept busy past the budget.
    setImmediate(() => blockEventLoop(300))
    const all = await decisions
    assert.deepEqual(all.map((d) => d.source), Array(30).fill('store'))
    assert.equal(all.filter((d) => d.allowed).length, 10)
    assert.equal(limiter.getStats().breaker, 'closed')
  } finally {
    await limiter.close()
    c.disconnect()
  }
})

test('a batch written late in a busy turn gets the whole budget for its answer: decided by the store, not the fallback', async (t) => {
  const proxy = await startFaultProxy({ port: Number(new URL(REDIS_URL).port || 6379) })
  t.after(() => proxy.close())
  const c = createRedisClient({ url: proxy.rewrite(REDIS_URL), commandTimeoutMs: 200 })
  await new Promise((resolve) => c.once('ready', resolve))
  const limiter = new RateLimiter(c, { prefix: `${uniqueName('rl')}:`, timeoutMs: 200 })
  t.after(async () => { await limiter.close(); c.disconnect() })
  proxy.latency(40)
  const policy = { name: 'late-sent', limit: 10, windowMs: 60000 }
  const decisions = Promise.all(Array.from({ length: 30 }, () => limiter.check('busy-turn-client', [policy])))
  // The turn that asked for the decisions runs on for most of the budget before the batch is written, as the turn
  // of a freshly started instance that parses a burst does; Redis then answers within the budget of the write.
  blockEventLoop(160)
  const all = await decisions
  assert.deepEqual(all.map((d) => d.source), Array(30).fill('store'))
  assert.equal(all.filter((d) => d.allowed).length, 10)
  assert.equal(limiter.getStats().breaker, 'closed')
})

function capturingLog (): { lines: Array<{ level: string, details: Record<string, unknown>, message: string }>, log: FallbackLog } {
  const lines: Array<{ level: string, details: Record<string, unknown>, message: string }> = []
  return {
    lines,
    log: {
      warn: (details, message) => { lines.push({ level: 'warn', details: details as Record<string, unknown>, message }) },
      info: (details, message) => { lines.push({ level: 'info', details: details as Record<string, unknown>, message }) }
    }
  }
}

test('during a Redis outage three instances together admit at most the limit (each its share), not three times it', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const prefix = `${uniqueName('rl')}:`
  const instances = await Promise.all([0, 1, 2].map(async () => {
    const c = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
    c.on('error', () => {})
    t.after(() => c.disconnect())
    await new Promise((resolve) => c.once('ready', resolve))
    const limiter = new RateLimiter(c, { prefix, timeoutMs: 50, presenceIntervalMs: 50 })
    t.after(() => limiter.close())
    return limiter
  }))
  await eventually(() => instances.every((l) => l.getStats().instances === 3), 'every instance sees three in the presence set')
  await redis.stop()
  const policy = { name: 'shared', limit: 100, windowMs: 60000 }
  const decisions = await Promise.all(Array.from({ length: 600 }, (_, i) => (instances[i % 3] as RateLimiter).check('outage-client', [policy])))
  assert.ok(decisions.every((d) => d.source === 'fallback' || d.source === 'fast-path'), decisions.map((d) => d.source).join())
  const admitted = decisions.filter((d) => d.allowed).length
  assert.equal(admitted, 99, 'each of the three admits floor(100 / 3)')
  assert.ok(admitted <= policy.limit)
})

/**
 * Instances on a private Redis behind a fault proxy: `proxy.reset()` is an outage in which nothing they send reaches
 * Redis (a paused Redis would run the timed-out calls once it wakes, and count them after all), `proxy.heal()` its end.
 */
async function fleetBehindProxy (t: { after: (fn: () => unknown) => void }, size: number, options: { breakerThreshold?: number } = {}) {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const prefix = `${uniqueName('rl')}:`
  const clients: Array<ReturnType<typeof createRedisClient>> = []
  const instances = await Promise.all(Array.from({ length: size }, async () => {
    const c = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 50 })
    c.on('error', () => {})
    t.after(() => c.disconnect())
    clients.push(c)
    await new Promise((resolve) => c.once('ready', resolve))
    const limiter = new RateLimiter(c, { prefix, timeoutMs: 50, presenceIntervalMs: 50, breakerCooldownMs: 100, ...options })
    t.after(() => limiter.close())
    return limiter
  }))
  await eventually(() => instances.every((l) => l.getStats().instances === size), `every instance sees ${size} in the presence set`)
  const admin = new Redis(redis.url)
  t.after(() => admin.quit())
  /** The entries Redis holds for a client's key. */
  const counted = async (identity: string): Promise<number> => {
    const [key] = await admin.keys(`*${identity}*`)
    return key === undefined ? 0 : await admin.llen(key)
  }
  return { proxy, instances, clients, counted }
}

test('a window that spans the start of a Redis outage admits at most the limit: the fallback starts a key from the count Redis last gave, not from zero', async (t) => {
  const { proxy, instances, counted } = await fleetBehindProxy(t, 3)
  const policy = { name: 'shared', limit: 30, windowMs: 60000 }
  // 12 through Redis, one instance after the other: the last counts they were given are 10, 11 and 12.
  let admitted = 0
  for (let i = 0; i < 12; i++) {
    const d = await (instances[i % 3] as RateLimiter).check('handover-client', [policy])
    assert.equal(d.source, 'store')
    if (d.allowed) admitted++
  }
  assert.equal(admitted, 12)
  proxy.reset()
  const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => (instances[i % 3] as RateLimiter).check('handover-client', [policy])))
  assert.ok(decisions.every((d) => d.source === 'fallback' || d.source === 'fast-path'), decisions.map((d) => d.source).join())
  const inFallback = decisions.filter((d) => d.allowed).length
  // Each admits a third of what the limit left as it last saw it: floor(20 / 3), floor(19 / 3), floor(18 / 3).
  assert.equal(inFallback, 18)
  assert.ok(admitted + inFallback <= policy.limit, `${admitted} through Redis and ${inFallback} in fallback, against a limit of ${policy.limit}`)
  proxy.heal()
  assert.equal(await counted('handover-client'), 12, 'nothing sent during the outage reached Redis')
})

test('a window that spans the end of a Redis outage admits at most the limit: what the fallback admitted is charged to Redis once it answers again', async (t) => {
  const { proxy, instances, counted } = await fleetBehindProxy(t, 3)
  const policy = { name: 'shared', limit: 30, windowMs: 60000 }
  proxy.reset()
  const during = await Promise.all(Array.from({ length: 300 }, (_, i) => (instances[i % 3] as RateLimiter).check('recovery-client', [policy])))
  assert.equal(during.filter((d) => d.allowed).length, 30, 'each of the three admits its 10')
  proxy.heal()
  // The heartbeats that Redis answers again charge it, with no request needed.
  await eventually(async () => await counted('recovery-client') >= 30, 'Redis holds the 30 admitted during the outage')
  assert.equal(await counted('recovery-client'), 30)
  const after = await Promise.all(Array.from({ length: 300 }, (_, i) => (instances[i % 3] as RateLimiter).check('recovery-client', [policy])))
  assert.ok(after.every((d) => d.source === 'store' || d.source === 'fast-path'), after.map((d) => d.source).join())
  assert.equal(after.filter((d) => d.allowed).length, 0, 'the window is full')
})

test('the first request an instance decides in Redis after an outage is refused when what it admitted in fallback filled the window', async (t) => {
  // A breaker that never opens: once the link is back, the next request goes to Redis, not to the fallback.
  const { proxy, instances, clients, counted } = await fleetBehindProxy(t, 1, { breakerThreshold: 1_000_000 })
  const limiter = instances[0] as RateLimiter
  const policy = { name: 'alone', limit: 20, windowMs: 60000 }
  proxy.reset()
  // Exactly the limit, none refused: no refusal is remembered to answer the next request from memory.
  const during = await Promise.all(Array.from({ length: 20 }, () => limiter.check('carried-client', [policy])))
  assert.deepEqual([during.filter((d) => d.allowed).length, during.every((d) => d.source === 'fallback')], [20, true])
  await eventually(() => clients[0]?.status !== 'ready', 'the client saw the link drop')
  proxy.heal()
  await eventually(() => clients[0]?.status === 'ready', 'the client is connected again')
  // The reconnection charges the 20 before any request it carries is decided.
  const next = await limiter.check('carried-client', [policy])
  assert.deepEqual([next.source, next.allowed], ['store', false], 'the 20 admitted in fallback fill the window')
  await eventually(async () => await counted('carried-client') >= 20, 'Redis holds the 20')
  assert.equal(await counted('carried-client'), 20)
})

test('what the fallback admitted is charged to Redis once, and only to the keys of the policies that admitted it', async (t) => {
  const { proxy, instances, clients, counted } = await fleetBehindProxy(t, 1, { breakerThreshold: 1_000_000 })
  const limiter = instances[0] as RateLimiter
  const global = { name: 'global', limit: 100, windowMs: 60000 }
  const strict = { name: 'strict', limit: 10, windowMs: 60000 }
  proxy.reset()
  const during = await Promise.all(Array.from({ length: 10 }, () => limiter.check('charged-once', [global])))
  assert.equal(during.filter((d) => d.allowed).length, 10)
  await eventually(() => clients[0]?.status !== 'ready', 'the client saw the link drop')
  // A request sent the moment the link is back, beside the charge the reconnection sends.
  const first = new Promise<Awaited<ReturnType<RateLimiter['check']>>>((resolve) => { clients[0]?.once('ready', () => { resolve(limiter.check('charged-once', [global, strict])) }) })
  proxy.heal()
  const both = await first
  assert.deepEqual([both.source, both.allowed], ['store', true], 'the strict policy was never used')
  const more = await Promise.all(Array.from({ length: 5 }, () => limiter.check('charged-once', [global])))
  assert.ok(more.every((d) => d.allowed))
  await eventually(async () => await counted('charged-once}:global') >= 16, 'Redis holds what was admitted under global')
  await sleep(200)
  assert.equal(await counted('charged-once}:global'), 16, '10 in fallback, charged once, then 1 and 5')
  assert.equal(await counted('charged-once}:strict'), 1)
})

test('a Redis that flaps within one window: a second outage starts a key from Redis\'s newer count, not from the first outage\'s', async (t) => {
  const { proxy, instances, clients } = await fleetBehindProxy(t, 1, { breakerThreshold: 1_000_000 })
  const limiter = instances[0] as RateLimiter
  const policy = { name: 'flap', limit: 10, windowMs: 1500 }
  const started = Date.now()
  const through = async (n: number): Promise<number> => (await Promise.all(Array.from({ length: n }, () => limiter.check('flapping', [policy])))).filter((d) => d.allowed).length
  const outage = async (during: () => Promise<number>): Promise<number> => {
    proxy.reset()
    const admitted = await during()
    await eventually(() => clients[0]?.status !== 'ready', 'the client saw the link drop')
    proxy.heal()
    await eventually(() => clients[0]?.status === 'ready', 'the client is connected again')
    return admitted
  }
  assert.equal(await through(10), 10)
  // Late in the window, so that the fallback's count of the first outage would still be kept at the second.
  await sleep(Math.max(0, started + 1100 - Date.now()))
  assert.equal(await outage(() => through(1)), 0, 'the first outage starts from the 10 Redis counted')
  await sleep(Math.max(0, started + policy.windowMs + 100 - Date.now()))
  assert.equal(await through(10), 10, 'the first 10 left the window')
  assert.equal(await outage(() => through(20)), 0, 'the second outage starts from the 10 Redis counted since')
})

test('an instance that leaves the presence set is no longer counted: the others\' share grows', async (t) => {
  const prefix = `${uniqueName('rl')}:`
  const limiters = [0, 1].map(() => new RateLimiter(client(), { prefix, timeoutMs: 1000, presenceIntervalMs: 50 }))
  await eventually(() => limiters.every((l) => l.getStats().instances === 2), 'both see two')
  await (limiters[1] as RateLimiter).close()
  t.after(() => (limiters[0] as RateLimiter).close())
  await eventually(() => (limiters[0] as RateLimiter).getStats().instances === 1, 'the one left sees itself alone')
})

test('a fallback is logged once per episode, with its cause, and its end once', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const c = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  c.on('error', () => {})
  t.after(() => c.disconnect())
  await new Promise((resolve) => c.once('ready', resolve))
  const { lines, log } = capturingLog()
  const limiter = new RateLimiter(c, { timeoutMs: 50, breakerThreshold: 2, breakerCooldownMs: 100, log, prefix: `${uniqueName('rl')}:` })
  t.after(() => limiter.close())
  const policy = { name: 'logged', limit: 1000, windowMs: 60000 }
  assert.equal((await limiter.check('a', [policy])).source, 'store')
  for (let episode = 1; episode <= 2; episode++) {
    await redis.stop()
    const decisions = []
    for (let i = 0; i < 20; i++) decisions.push(await limiter.check('a', [policy]))
    decisions.push(...await Promise.all(Array.from({ length: 50 }, () => limiter.check('a', [policy]))))
    assert.ok(decisions.every((d) => d.source === 'fallback'))
    await redis.start()
    await eventually(async () => (await limiter.check('a', [policy])).source === 'store', `episode ${episode}: back on the store`)
    const warned = lines.filter((l) => l.level === 'warn')
    assert.equal(warned.length, episode, `one fallback line per episode: ${JSON.stringify(warned)}`)
    const cause = (warned[episode - 1] as { details: { cause?: { message?: string } } }).details.cause
    assert.ok(cause?.message, 'the line names its cause')
    assert.match((warned[episode - 1] as { message: string }).message, /falling back/)
    assert.equal(lines.filter((l) => l.level === 'info').length, episode, 'one line when the episode ends')
  }
})

test('a decision callback that throws leaves the other requests of its batch answered, and its error uncaught, not a rejection', async (t) => {
  const limiter = new RateLimiter(client(), { prefix: `${uniqueName('rl')}:`, timeoutMs: 2000 })
  t.after(() => limiter.close())
  await limiter.ready()
  const policy = { name: 'cb', limit: 10, windowMs: 60000 }
  const thrown: unknown[] = []
  const rejected: unknown[] = []
  const uncaught = process.rawListeners('uncaughtException') as Array<(error: Error) => void>
  const unhandled = process.rawListeners('unhandledRejection') as Array<(reason: unknown) => void>
  process.removeAllListeners('uncaughtException').removeAllListeners('unhandledRejection')
  process.on('uncaughtException', (error) => { thrown.push(error) }).on('unhandledRejection', (reason) => { rejected.push(reason) })
  t.after(() => {
    process.removeAllListeners('uncaughtException').removeAllListeners('unhandledRejection')
    for (const l of uncaught) process.on('uncaughtException', l)
    for (const l of unhandled) process.on('unhandledRejection', l)
  })
  const answered: string[] = []
  // Three requests of one turn: one batch, one script call.
  limiter.checkWith('first', [policy], 1, () => { throw new Error('callback bug') })
  for (const identity of ['second', 'third']) limiter.checkWith(identity, [policy], 1, (d) => { if (d.source === 'store') answered.push(identity) })
  await eventually(async () => answered.length === 2 && thrown.length === 1, 'the others answered from the store')
  assert.deepEqual(answered, ['second', 'third'])
  assert.equal((thrown[0] as Error).message, 'callback bug')
  await sleep(20)
  assert.deepEqual(rejected, [])
})

test('two limiters on one client are one member of the presence set, which leaves it with the last of them, not the first', async (t) => {
  const c = createRedisClient({ url: REDIS_URL })
  t.after(() => c.disconnect())
  await new Promise((resolve) => c.once('ready', resolve))
  const prefix = `${uniqueName('rl')}:`
  const members = async (): Promise<number> => c.zcard(`${prefix}instances`)
  const first = new RateLimiter(c, { prefix })
  const second = new RateLimiter(c, { prefix })
  await first.ready()
  await second.ready()
  assert.equal(await members(), 1)
  await first.close()
  await first.close()
  assert.equal(await members(), 1, 'the instance still runs a limiter on this client: it stays counted')
  await second.close()
  assert.equal(await members(), 0, 'gone with the last one')
})
