import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { MemoryStore } from './memory-store.js'
import { LOG_SLACK, MAX_BATCH, RedisStore } from './redis-store.js'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'
import type { RateLimitPolicy } from './policies.js'
import { uniqueName } from '../../test/helpers/database.js'

const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
after(() => redis.quit())

const stores: Array<[string, () => RateLimitStore]> = [
  ['memory store', () => new MemoryStore()],
  ['redis store', () => new RedisStore(redis)]
]

const policy = (limit: number, windowMs: number, name = 'p'): RateLimitPolicy => ({ name, limit, windowMs })

for (const [name, make] of stores) {
  describe(name, () => {
    test('admits up to the limit, then refuses with the real wait', async () => {
      const store = make()
      const key = uniqueName('rl')
      const p = policy(5, 2000)
      for (let i = 0; i < 5; i++) {
        const [r] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
        assert.equal(r?.allowed, true)
        assert.equal(r?.remaining, 4 - i)
      }
      const [refused] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
      assert.equal(refused?.allowed, false)
      assert.equal(refused?.remaining, 0)
      assert.ok((refused?.retryAfterMs ?? 0) > 1500 && (refused?.retryAfterMs ?? 0) <= 2000, `retry ${refused?.retryAfterMs}`)
    })

    test('all policies of a request are decided together: a refusal records nothing anywhere', async () => {
      const store = make()
      const [k1, k2] = [uniqueName('rl'), uniqueName('rl')]
      const wide = policy(100, 60000, 'wide')
      const narrow = policy(2, 60000, 'narrow')
      for (let i = 0; i < 2; i++) await store.check({ keys: [k1, k2], policies: [wide, narrow], cost: 1, consume: true })
      const results = await store.check({ keys: [k1, k2], policies: [wide, narrow], cost: 1, consume: true })
      assert.deepEqual(results.map((r) => r.allowed), [true, false])
      const [peek] = await store.check({ keys: [k1], policies: [wide], cost: 0, consume: false })
      assert.equal(peek?.remaining, 98, 'the refused request was not counted by the wide policy')
    })

    test('cost counts units; a cost above the limit is refused; a peek consumes nothing', async () => {
      const store = make()
      const key = uniqueName('rl')
      const p = policy(10, 60000)
      assert.equal((await store.check({ keys: [key], policies: [p], cost: 4, consume: true }))[0]?.remaining, 6)
      assert.equal((await store.check({ keys: [key], policies: [p], cost: 0, consume: false }))[0]?.remaining, 6)
      assert.equal((await store.check({ keys: [key], policies: [p], cost: 6, consume: true }))[0]?.allowed, true)
      assert.equal((await store.check({ keys: [key], policies: [p], cost: 1, consume: true }))[0]?.allowed, false)
      const big = await store.check({ keys: [uniqueName('rl')], policies: [p], cost: 11, consume: true })
      assert.equal(big[0]?.allowed, false)
    })

    test('a limit above the batch size is exact with expired entries in the log: no false 429, never over', async () => {
      const store = make()
      const key = uniqueName('rl')
      const p = policy(40, 300)
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 40; i++) {
          const [r] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
          assert.equal(r?.allowed, true, `round ${round}, request ${i + 1}`)
        }
        const [over] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
        assert.equal(over?.allowed, false)
        assert.equal(over?.remaining, 0)
        await sleep(320)
      }
    })

    test('a window boundary never lets more than the limit through any trailing window', async () => {
      const store = make()
      const key = uniqueName('rl')
      const windowMs = 400
      const p = policy(10, windowMs)
      // Each admission was decided somewhere between the call and its answer; under load the answer can arrive late,
      // so only what must have happened counts: 11 admissions whose decisions surely fit in one window.
      const admitted: Array<{ sent: number, answered: number }> = []
      const started = performance.now()
      // Requests packed at the end of one window and the start of the next, as a fixed window would split them.
      while (performance.now() - started < 1300) {
        const sent = performance.now()
        const [r] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
        if (r?.allowed) admitted.push({ sent, answered: performance.now() })
        await sleep(5)
      }
      assert.ok(admitted.length >= 20, `admitted ${admitted.length}`)
      for (let i = 0; i + 10 < admitted.length; i++) {
        const first = admitted[i] as { sent: number }
        const eleventh = admitted[i + 10] as { answered: number }
        const span = eleventh.answered - first.sent
        assert.ok(span >= windowMs - 2, `11 admitted within ${span.toFixed(1)} ms, less than one ${windowMs} ms window`)
      }
    })
  })
}

test('a Redis key lives at least one window past its newest request, and at most three', async () => {
  const store = new RedisStore(redis)
  const key = uniqueName('rl')
  const p = policy(100, 500)
  await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  const first = await redis.pttl(key)
  assert.ok(first > 1000 && first <= 1500, `ttl ${first}`)
  // Once less than two windows of life are left, the next admission pushes the expiry three windows out again.
  await sleep(1050)
  assert.ok(await redis.pttl(key) < 500)
  await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  const pushed = await redis.pttl(key)
  assert.ok(pushed > 1000 && pushed <= 1500, `ttl ${pushed}`)
  const [peek] = await store.check({ keys: [key], policies: [p], cost: 0, consume: false })
  assert.equal(peek?.remaining, 99, 'the request of the previous window no longer counts')
})

test('a busy key whose pushes skip the expiry look still outlives its newest entry by a window', async () => {
  const store = new RedisStore(redis)
  const key = uniqueName('rl')
  const windowMs = 1500
  const p = policy(1000, windowMs)
  const admit = async (): Promise<void> => {
    const [r] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
    assert.equal(r?.allowed, true)
  }
  // One entry, then LOG_SLACK more late in its window (the expiry is looked at while the log is that short), then
  // one in the next window: its push neither trims (the entry at LOG_SLACK - 1 is unexpired) nor leaves a short log,
  // so it skips the look, and the expiry set at the earlier looks must already cover its whole window.
  await admit()
  await sleep(0.9 * windowMs)
  for (let i = 0; i < LOG_SLACK; i++) await admit()
  await sleep(0.9 * windowMs)
  await admit()
  const left = await redis.pttl(key)
  assert.ok(left > windowMs - 50, `the key expires in ${left} ms, before its newest entry's window ends`)
})

test('entries past the window are trimmed in batches: remaining understates by less than LOG_SLACK, never near the limit', async () => {
  const store = new RedisStore(redis)
  const key = uniqueName('rl')
  const p = policy(100, 300)
  for (let i = 0; i < 40; i++) await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  await sleep(320)
  const [after] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  assert.equal(after?.allowed, true)
  // Exact would be 99; the 40 old entries are dropped 16 at a time until fewer than 16 are left.
  assert.ok((after?.remaining ?? 0) <= 99 && 99 - (after?.remaining ?? 0) < LOG_SLACK, `remaining ${after?.remaining}`)
  assert.ok(await redis.llen(key) < 1 + LOG_SLACK, 'at most LOG_SLACK - 1 stale entries are kept')
  const [peek] = await store.check({ keys: [key], policies: [p], cost: 0, consume: false })
  assert.equal(peek?.remaining, 99, 'a peek trims to the exact count')
  // Close to the limit every count is exact.
  for (let i = 0; i < 85; i++) await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  const [near] = await store.check({ keys: [key], policies: [p], cost: 1, consume: true })
  assert.equal(near?.remaining, 13)
})

test('decisions asked for in the same turn go to Redis in one script call each batch, decided in order and exact', async () => {
  const counted = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
  after(() => counted.quit())
  const store = new RedisStore(counted)
  const unbatched = new RedisStore(counted, { batch: false })
  const scripted = counted as unknown as { chassisRateLimitBatch: (...args: unknown[]) => Promise<number[]> }
  const original = scripted.chassisRateLimitBatch.bind(counted)
  let calls = 0
  scripted.chassisRateLimitBatch = (...args: unknown[]) => { calls++; return original(...args) }
  const [hot, costly, layered] = [uniqueName('rl'), uniqueName('rl'), uniqueName('rl')]
  const one = policy(100, 60000)
  const two = policy(60, 60000)
  const decisions = await Promise.all([
    ...Array.from({ length: 150 }, () => store.check({ keys: [hot], policies: [one], cost: 1, consume: true })),
    ...Array.from({ length: 50 }, () => store.check({ keys: [costly], policies: [two], cost: 2, consume: true })),
    ...Array.from({ length: 20 }, () => store.check({ keys: [layered, hot], policies: [policy(1000, 60000, 'wide'), one], cost: 1, consume: true }))
  ])
  assert.equal(calls, Math.ceil(220 / MAX_BATCH))
  assert.equal(decisions.slice(0, 150).filter(([r]) => r?.allowed).length, 100)
  assert.equal(decisions.slice(150, 200).filter(([r]) => r?.allowed).length, 30)
  // The layered requests came after the hot key was full: none is admitted and the wide policy recorded nothing.
  assert.ok(decisions.slice(200).every((rs) => rs[0]?.allowed === true && rs[1]?.allowed === false))
  assert.equal(await counted.llen(layered), 0)
  calls = 0
  await Promise.all(Array.from({ length: 10 }, () => unbatched.check({ keys: [uniqueName('rl')], policies: [one], cost: 1, consume: true })))
  assert.equal(calls, 10)
})

test('requests of one batch that differ only in limit, cost, consume or window are each decided under their own', async () => {
  const counted = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
  after(() => counted.quit())
  const store = new RedisStore(counted)
  const alone = new RedisStore(counted, { batch: false })
  const scripted = counted as unknown as { chassisRateLimitBatch: (...args: unknown[]) => Promise<number[]> }
  const original = scripted.chassisRateLimitBatch.bind(counted)
  let calls = 0
  scripted.chassisRateLimitBatch = (...args: unknown[]) => { calls++; return original(...args) }
  const three = policy(3, 60000, 'three')
  const five = policy(5, 60000, 'five')
  const fiveShort = policy(5, 5000, 'short')
  const wide = policy(50, 60000, 'wide')
  // Each request differs from the one before it in one thing only, so none may take its neighbour's arguments.
  const sequence = (small: string, large: string, short: string, both: string): StoreCheck[] => Array.from({ length: 5 }, () => [
    { keys: [small], policies: [three], cost: 1, consume: true },
    { keys: [large], policies: [five], cost: 1, consume: true }, // the limit
    { keys: [large], policies: [five], cost: 2, consume: true }, // the cost
    { keys: [large], policies: [five], cost: 2, consume: false }, // consume
    { keys: [short], policies: [five], cost: 2, consume: true },
    { keys: [short], policies: [fiveShort], cost: 2, consume: true }, // the window
    { keys: [both, large], policies: [wide, five], cost: 1, consume: true },
    { keys: [small], policies: [policy(3, 60000, 'three')], cost: 1, consume: true } // equal, another object
  ]).flat()
  const batchKeys = [uniqueName('rl'), uniqueName('rl'), uniqueName('rl'), uniqueName('rl')] as const
  const batched = await Promise.all(sequence(...batchKeys).map((c) => store.check(c)))
  assert.equal(calls, 1, 'one script call for the whole batch')
  // The same requests one by one, each alone in its script call, are the reference.
  const oneKeys = [uniqueName('rl'), uniqueName('rl'), uniqueName('rl'), uniqueName('rl')] as const
  const reference: PolicyResult[][] = []
  for (const c of sequence(...oneKeys)) reference.push(await alone.check(c))
  const shape = (rs: PolicyResult[][]): unknown => rs.map((r) => r.map((x) => [x.policy.name, x.allowed, x.remaining, x.retryAfterMs > 0]))
  assert.deepEqual(shape(batched), shape(reference))
  assert.ok(batched.some((r) => r[0]?.allowed === false), 'some requests are refused')
  for (const r of batched.flat()) if (r.policy.name === 'short') assert.ok(r.retryAfterMs <= 5000, `a 5 s window waits ${r.retryAfterMs} ms`)
  for (let i = 0; i < 4; i++) assert.equal(await counted.llen(batchKeys[i] as string), await counted.llen(oneKeys[i] as string))
})

test('a batch whose write throws fails its own decisions and leaves the other batches of its turn to be answered', async () => {
  // A script call that throws before it is sent (a malformed check here, a budget that refuses by throwing) used to
  // stop the flush: the batches after it in the turn were never written and their requests waited forever.
  const key = uniqueName('rl')
  const one = policy(1000, 60000)
  const refusing = new RedisStore(redis, { budget: (call) => { if (refused++ === 0) throw new Error('refused'); return call() } })
  let refused = 0
  for (const [store, first] of [
    [new RedisStore(redis), { keys: [key], policies: undefined as unknown as RateLimitPolicy[], cost: 1, consume: true }],
    [refusing, { keys: [key], policies: [one], cost: 1, consume: true }]
  ] as Array<[RedisStore, StoreCheck]>) {
    const decisions = [store.check(first), ...Array.from({ length: MAX_BATCH * 2 }, () => store.check({ keys: [key], policies: [one], cost: 1, consume: true }))]
    const settled = await Promise.race([Promise.allSettled(decisions), sleep(2000).then(() => undefined)])
    assert.ok(settled !== undefined, 'every decision of the turn is answered')
    assert.equal(settled.filter((s) => s.status === 'rejected').length, MAX_BATCH, 'the first batch fails, alone')
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, MAX_BATCH + 1)
  }
})
