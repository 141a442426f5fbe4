import { once } from 'node:events'
import { test, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as turn } from 'node:timers/promises'
import { createRedisClient } from '../redis/index.js'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { ChangeHistory } from './change-history.js'
import type { CacheCore } from './core.js'
import { Invalidator, MAX_PENDING_KEYS, RETRY_MAX_MS } from './invalidation.js'
import { LocalTier } from './local-tier.js'
import { resolveCacheOptions, type CacheLogger } from './options.js'
import { PendingKeys } from './pending-keys.js'
import { SingleFlight } from './single-flight.js'
import type { RedisTier } from './redis-tier.js'
import { CacheCounters } from './stats.js'
import { TagGenerations } from './tag-generations.js'
import { readOne } from './tier-reads.js'
import { STUCK_LINE_INTERVAL_MS } from './stuck-invalidations.js'
import { encode } from './codec.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { eventually } from '../../test/helpers/eventually.js'

const server = await startPrivateRedis()
after(() => server.destroy())

test('an invalidation Redis refuses while connected (OOM under maxmemory) is retried until taken, without waiting for the link to drop', async (t) => {
  const { writer, reader, admin, refuse } = await refusingPair(t, 'refused:')
  await writer.set('lead:1', 'old')
  assert.equal(await reader.get('lead:1'), 'old')
  assert.equal(reader.localTtl('lead:1') > 0, true, 'the reader keeps a local copy')

  // Redis refuses every command that may grow memory, the tombstone's SET and the script's INCR among them (DEL and
  // GET still pass): the connection and the reads stay up, so neither the link nor the breaker ever recovers.
  await refuse(true)
  const flushes = writer.getStats().local.flushes
  await writer.del('lead:1')
  assert.notEqual(await admin.get('refused:lead:1'), null, 'Redis refused the tombstone: the old entry is still there')
  assert.equal(await writer.get('lead:1'), undefined, 'the writer does not read back the old Redis copy')
  assert.equal(await reader.get('lead:1'), 'old', 'the other instance still serves the old value meanwhile')
  await new Promise((resolve) => setTimeout(resolve, 300))

  await refuse(false)
  const restored = performance.now()
  const seen = await eventually(async () => (await reader.get('lead:1')) === undefined, 'the other instance stops serving the old value')
  assert.ok(seen - restored <= RETRY_MAX_MS + 1000, `taken ${Math.round(seen - restored)} ms after Redis accepted writes again`)
  assert.equal(await reader.get('lead:1'), undefined)
  assert.equal(reader.localTtl('lead:1'), 0)
  assert.equal(writer.getStats().local.flushes, flushes, 'the link never dropped')
  assert.equal(writer.getStats().redis.breaker, 'closed')
})

interface Line { level: 'warn' | 'info', details: Record<string, unknown>, message: string }

function capturingLogger (): { lines: Line[], logger: CacheLogger } {
  const lines: Line[] = []
  const line = (level: Line['level']) => (details: object, message: string): void => { lines.push({ level, details: details as Record<string, unknown>, message }) }
  return { lines, logger: { warn: line('warn'), info: line('info') } }
}

/**
 * A writer and a reader of one prefix over the private Redis, and a client to make that Redis refuse writes; `clock`
 * is the writer's monotonic clock.
 */
async function refusingPair (t: TestContext, prefix: string, clock?: () => number): Promise<{ writer: CacheManager, reader: CacheManager, admin: ReturnType<typeof createRedisClient>, lines: Line[], refuse: (on: boolean) => Promise<void> }> {
  const admin = createRedisClient({ url: server.url })
  const writerClient = createRedisClient({ url: server.url })
  const readerClient = createRedisClient({ url: server.url })
  const { lines, logger } = capturingLogger()
  // A threshold the retries cannot reach, so that the breaker never opens: these tests are about the retries, and on
  // a busy instance the reads Redis still answers would not keep it closed.
  const writer = createCacheManager(writerClient, { prefix, hotKeysMax: 0, breakerThreshold: 1e9, logger, clock })
  const reader = createCacheManager(readerClient, { prefix, hotKeysMax: 0 })
  t.after(async () => {
    await writer.close()
    await reader.close()
    await admin.config('SET', 'maxmemory', '0')
    await Promise.all([admin, writerClient, readerClient].map(async (c) => { await c.quit() }))
  })
  assert.ok(await writer.ready())
  assert.ok(await reader.ready())
  // The admin connection sends no command before it is ready: it has no offline queue (a command sent while it still
  // connects fails at once: "Stream isn't writeable").
  if (admin.status !== 'ready') await once(admin, 'ready')
  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  const refuse = async (on: boolean): Promise<void> => { await admin.config('SET', 'maxmemory', on ? '1' : '0') }
  return { writer, reader, admin, lines, refuse }
}

test('an invalidation Redis refuses is counted and logged once, and the count falls to zero when Redis takes it', async (t) => {
  const { writer, reader, lines, refuse } = await refusingPair(t, 'counted:')
  await writer.set('lead:7f3c', 'old')
  assert.equal(await reader.get('lead:7f3c'), 'old')
  assert.deepEqual([writer.getStats().invalidations.pending, writer.getStats().invalidations.refused], [0, 0])

  await refuse(true)
  await writer.del('lead:7f3c')
  assert.equal(writer.getStats().invalidations.pending, 1, 'the refused invalidation is pending')
  // Retries after 100, 300 and 700 ms, each refused and counted, none logged.
  await eventually(() => writer.getStats().invalidations.refused >= 4, 'three retries refused')
  assert.equal(writer.getStats().invalidations.pending, 1)
  const warned = lines.filter((l) => l.level === 'warn')
  assert.equal(warned.length, 1, `one line for the stuck period, none per retry: ${JSON.stringify(lines)}`)
  const err = warned[0]?.details.err as Record<string, unknown>
  assert.deepEqual(Object.keys(err), ['name', 'code', 'message'], 'the error\'s name, code and message, not the command ioredis attaches')
  assert.deepEqual([err.name, err.code], ['ReplyError', 'OOM'])
  assert.match(String(err.message), /^OOM command not allowed/)
  assert.equal(warned[0]?.details.pending, 1)
  assert.match(String(warned[0]?.message), /not taken by Redis/)

  await refuse(false)
  await eventually(() => writer.getStats().invalidations.pending === 0, 'Redis takes it')
  await eventually(async () => (await reader.get('lead:7f3c')) === undefined, 'the other instance drops the old value')
  const taken = lines.filter((l) => l.level === 'info')
  assert.equal(taken.length, 1, 'one line when Redis took them')
  assert.equal(taken[0]?.details.pendingAtMost, 1)
  assert.ok(Number(taken[0]?.details.refusedWrites) >= 4)
  assert.ok(Number(taken[0]?.details.stuckForMs) >= 700, `stuck for ${String(taken[0]?.details.stuckForMs)} ms`)
  assert.equal(lines.length, 2)
  assert.ok(!JSON.stringify(lines).includes('7f3c'), 'no line names the key: keys hold ids')
})

test('a Redis that refuses invalidations for an hour writes one warning, not one per retry, and one line once it takes them', async (t) => {
  let now = 0
  const { writer, lines, refuse } = await refusingPair(t, 'hour:', () => now)
  // Only the retries' timers and the cache's clock are faked: Redis answers each retry for real, refusing it.
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const tick = (ms: number): void => { now += ms; t.mock.timers.tick(ms) }
  await refuse(true)
  await writer.del('lead:1')
  const refusedAfter = async (n: number): Promise<void> => {
    for (let i = 0; i < 100_000 && writer.getStats().invalidations.refused < n; i++) await turn()
    assert.ok(writer.getStats().invalidations.refused >= n, `retry ${n} refused`)
  }
  // 100 ms doubling to 2 s: an hour is about 1,800 retries.
  for (let elapsed = 0, retry = 2; elapsed < 3_600_000; elapsed += RETRY_MAX_MS, retry++) {
    tick(RETRY_MAX_MS)
    await refusedAfter(retry)
  }
  assert.ok(writer.getStats().invalidations.refused > 1_800)
  assert.equal(writer.getStats().invalidations.pending, 1)
  assert.equal(lines.length, 1, `one line for the hour: ${lines.length}`)
  assert.equal(lines[0]?.level, 'warn')

  await refuse(false)
  tick(RETRY_MAX_MS)
  for (let i = 0; i < 100_000 && writer.getStats().invalidations.pending > 0; i++) await turn()
  assert.equal(writer.getStats().invalidations.pending, 0)
  assert.deepEqual(lines.map((l) => l.level), ['warn', 'info'])
  assert.ok(Number(lines[1]?.details.stuckForMs) >= 3_600_000, `stuck for ${String(lines[1]?.details.stuckForMs)} ms`)
  assert.ok(Number(lines[1]?.details.refusedWrites) > 1_800)
})

test('a Redis that refuses and takes invalidations by turns writes at most one warning a minute; a period that lasts is logged, with the periods left out', async (t) => {
  let now = 0
  const { writer, lines, refuse } = await refusingPair(t, 'turns:', () => now)
  for (let i = 0; i < 10; i++) {
    await refuse(true)
    await writer.del(`lead:${i}`)
    assert.equal(writer.getStats().invalidations.pending, 1)
    await refuse(false)
    await eventually(() => writer.getStats().invalidations.pending === 0, `period ${i}: Redis takes it`)
  }
  assert.equal(writer.getStats().invalidations.refused, 10)
  assert.deepEqual(lines.map((l) => l.level), ['warn', 'info'], 'the first period logged, the nine within its minute not')

  // One more within the minute, which lasts: logged once the minute is over, at its next refused retry.
  await refuse(true)
  await writer.del('lead:10')
  const refused = writer.getStats().invalidations.refused
  await eventually(() => writer.getStats().invalidations.refused > refused, 'a retry refused')
  assert.equal(lines.length, 2)
  now += STUCK_LINE_INTERVAL_MS
  await eventually(() => lines.length === 3, 'the period is logged once the minute is over')
  assert.equal(lines[2]?.level, 'warn')
  assert.equal(lines[2]?.details.unloggedPeriods, 9, 'the line counts the periods left out')
  assert.ok(Number(lines[2]?.details.stuckForMs) >= STUCK_LINE_INTERVAL_MS)
  await refuse(false)
  await eventually(() => writer.getStats().invalidations.pending === 0, 'Redis takes it')
  assert.deepEqual(lines.map((l) => l.level), ['warn', 'info', 'warn', 'info'])
})

test('a wall clock stepped back does not silence the stuck-invalidation warning', async (t) => {
  let now = 0
  const { writer, lines, refuse } = await refusingPair(t, 'stepped:', () => now)
  // Only the wall clock is faked, to be stepped as NTP or a resumed VM steps it; the cache's own clock is `now`.
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
  await refuse(true)
  await writer.del('lead:1')
  assert.deepEqual(lines.map((l) => l.level), ['warn'])

  // The wall clock goes back an hour while the invalidation is stuck; a second passes.
  t.mock.timers.setTime(Date.now() - 3_600_000)
  now += 1000
  await refuse(false)
  await eventually(() => writer.getStats().invalidations.pending === 0, 'Redis takes it')
  assert.deepEqual(lines.map((l) => l.level), ['warn', 'info'])
  assert.equal(lines[1]?.details.stuckForMs, 1000, 'stuck for the second that passed, not minus an hour')

  // A minute after the first warning by the monotonic clock (the wall clock is still an hour behind it), Redis
  // refuses again: the warning comes at once, not an hour late.
  now += STUCK_LINE_INTERVAL_MS
  await refuse(true)
  await writer.del('lead:2')
  assert.deepEqual(lines.map((l) => l.level), ['warn', 'info', 'warn'], 'the new stuck period is logged on time')
  assert.equal(lines[2]?.details.stuckForMs, 0)
  await refuse(false)
  await eventually(() => writer.getStats().invalidations.pending === 0, 'Redis takes it')
})

test('a cache closed with invalidations Redis never took no longer reports them pending, and logs that it dropped them', async (t) => {
  let now = 0
  const { writer, lines, refuse } = await refusingPair(t, 'closed:', () => now)
  await refuse(true)
  await writer.del('lead:9e1d')
  await writer.invalidateTags(['leads'])
  assert.equal(writer.getStats().invalidations.pending, 2)
  now += 5000
  await writer.close()
  // Nothing retries them once closed: the other instances serve the old values until their TTLs.
  assert.equal(writer.getStats().invalidations.pending, 0, 'nothing is pending once closed')
  const dropped = lines.filter((l) => l.details.code === 'CACHE_INVALIDATIONS_DROPPED')
  assert.equal(dropped.length, 1, `one line says they were dropped: ${JSON.stringify(lines)}`)
  assert.equal(dropped[0]?.level, 'warn')
  assert.deepEqual([dropped[0]?.details.dropped, dropped[0]?.details.stuckForMs], [2, 5000])

  // One Redis refuses after the close (a write that was under way, say) is dropped at once, not left pending.
  const refused = writer.getStats().invalidations.refused
  await writer.del('lead:9e1e')
  assert.equal(writer.getStats().invalidations.pending, 0)
  assert.equal(writer.getStats().invalidations.refused, refused + 1, 'counted as refused')
  assert.deepEqual(lines.filter((l) => l.details.code === 'CACHE_INVALIDATIONS_DROPPED').map((l) => l.details.dropped), [2, 1])
  assert.ok(!JSON.stringify(lines).includes('9e1'), 'no line names a key')
})

/** A Redis tier that refuses (or holds) the commands the test says, and logs the ones it takes. */
function fakeTier (): { tier: RedisTier, taken: string[], refused: string[], refuse: Set<string>, hold: Map<string, Promise<void>> } {
  const taken: string[] = []
  const refused: string[] = []
  const refuse = new Set<string>()
  const hold = new Map<string, Promise<void>>()
  const run = async (what: string): Promise<void> => {
    const kind = what.split(' ')[0] as string
    if (refuse.has(kind)) {
      refused.push(what)
      throw new Error('OOM command not allowed when used memory > \'maxmemory\'.')
    }
    await hold.get(what)
    taken.push(what)
  }
  const tier = {
    cluster: false,
    available: true,
    client: { status: 'ready' },
    invalidate: async () => { await run('invalidate'); return { gens: [], receivers: 0 } },
    bury: async (keys: string[]) => { await run(`bury ${keys.join(',')}`) },
    deleteMatching: async (match: string) => { await run(`scan ${match}`); return 0 },
    incr: async (keys: string[]) => { await run(`incr ${keys.join(',')}`); return keys.map(() => 7) },
    getNumbers: async (keys: string[]) => keys.map(() => 0)
  }
  return { tier: tier as unknown as RedisTier, taken, refused, refuse, hold }
}

function invalidatorOver (tier: RedisTier, maxPendingInvalidations = 10_000, logger?: CacheLogger): { core: CacheCore, invalidator: Invalidator } {
  const options = resolveCacheOptions({ prefix: 'p:', maxPendingInvalidations, logger })
  const core: CacheCore = { options, local: new LocalTier(100, 1e6, () => {}), tier, stats: new CacheCounters(), tags: new TagGenerations(tier, 'p:'), history: new ChangeHistory(), pending: new PendingKeys(), reads: new SingleFlight(() => {}), warming: undefined, closed: false, linked: () => true }
  return { core, invalidator: new Invalidator(core, undefined) }
}

async function settle (): Promise<void> {
  for (let i = 0; i < 20; i++) await turn()
}

test('a pending invalidation is retried in order and once, and the retry stops on close', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const { tier, taken, refused, refuse, hold } = fakeTier()
  const { core, invalidator } = invalidatorOver(tier)

  refuse.add('invalidate').add('bury').add('incr').add('scan')
  await invalidator.invalidate({ keys: ['a'] })
  await invalidator.invalidate({ keys: ['b'], tags: ['t'] })
  await invalidator.invalidate({ patterns: ['c:*'] })
  assert.equal(core.pending.has('b'), true)
  assert.deepEqual(taken, [])
  refused.length = 0

  t.mock.timers.tick(100)
  await settle()
  assert.deepEqual(refused, ['bury p:a'], 'the first retry, 100 ms later, stops at the oldest')

  // The keys are taken, the tag's count is not: the next retry must not bury them again.
  refuse.delete('bury')
  refuse.delete('scan')
  t.mock.timers.tick(200)
  await settle()
  assert.deepEqual(taken, ['bury p:a', 'bury p:b'])
  assert.equal(core.pending.has('a'), false)
  assert.equal(core.pending.has('c:1'), true)

  // A recovery trigger while a retry runs starts no second one.
  refuse.delete('incr')
  let release = (): void => {}
  hold.set('incr p:__tag:t', new Promise<void>((resolve) => { release = resolve }))
  t.mock.timers.tick(400)
  await settle()
  invalidator.replayPending()
  invalidator.replayPending()
  await settle()
  release()
  await settle()
  assert.deepEqual(taken, ['bury p:a', 'bury p:b', 'incr p:__tag:t', 'scan p:c:*'])
  assert.equal(core.pending.empty, true)
  t.mock.timers.tick(60_000)
  await settle()
  assert.equal(taken.length, 4, 'nothing is replayed twice')

  // Refused again, then closed: no retry after close, however long.
  refuse.add('bury').add('invalidate')
  await invalidator.invalidate({ keys: ['d'] })
  refused.length = 0
  core.closed = true
  invalidator.close()
  t.mock.timers.tick(60_000)
  await settle()
  assert.deepEqual(refused, [])
})

test('past maxPendingInvalidations the retry flushes the prefix once, then what was queued after it, in order', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const { tier, taken, refuse } = fakeTier()
  const { core, invalidator } = invalidatorOver(tier, 2)
  refuse.add('invalidate').add('bury').add('scan')
  for (const key of ['a', 'b', 'c', 'd']) await invalidator.invalidate({ keys: [key] })
  assert.equal(core.pending.has('anything'), true, 'after an overflow every key may be old in Redis')
  refuse.clear()
  t.mock.timers.tick(100)
  await settle()
  assert.deepEqual(taken, ['scan p:*', 'bury p:d'])
  assert.equal(core.pending.empty, true)
  core.closed = true
  invalidator.close()
})

test('a flush of the prefix that Redis refuses after close is dropped, not left pending', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const { tier, refuse, hold } = fakeTier()
  const { lines, logger } = capturingLogger()
  const { core, invalidator } = invalidatorOver(tier, 1, logger)
  refuse.add('invalidate')
  for (const key of ['a', 'b']) await invalidator.invalidate({ keys: [key] })
  assert.equal(invalidator.pendingCount, 1, 'one flush of the prefix')
  refuse.clear()
  let fail = (): void => {}
  hold.set('scan p:*', new Promise<void>((_resolve, reject) => { fail = () => { reject(new Error('READONLY You can\'t write against a read only replica.')) } }))
  t.mock.timers.tick(100)
  await settle()
  // The flush is under way when the cache closes, then Redis refuses it.
  core.closed = true
  invalidator.close()
  fail()
  await settle()
  assert.equal(invalidator.pendingCount, 0)
  const dropped = lines.filter((l) => l.details.code === 'CACHE_INVALIDATIONS_DROPPED')
  assert.deepEqual(dropped.map((l) => l.details.dropped), [1])
})

test('a read while Redis is refusing a pattern invalidation leaves no copy of the old value on the invalidating instance', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const { tier, hold } = fakeTier()
  const { core, invalidator } = invalidatorOver(tier)
  t.after(() => { core.closed = true; invalidator.close() })
  // Redis still holds the old value, which a read copies into the local tier.
  const old = encode({ v: 'old', g: 0 }, 60_000)
  Object.assign(tier, { get: async () => ({ bytes: old, pttl: undefined }) })
  // READONLY after a failover: the SCAN runs, then the UNLINK is refused.
  let refuse = (): void => {}
  hold.set('scan p:c:*', new Promise<void>((_resolve, reject) => { refuse = () => { reject(new Error('READONLY You can\'t write against a read only replica.')) } }))
  const invalidating = invalidator.invalidate({ patterns: ['c:*'] })
  await settle()
  assert.deepEqual(await readOne(core, 'c:1', core.history.seq), { value: 'old' }, 'a read while the write runs still gets the old value')
  refuse()
  await invalidating
  assert.equal(core.pending.has('c:1'), true)
  assert.equal(core.local.get('c:1'), undefined, 'the old value read meanwhile is not served from the local tier')
})

test('a read while Redis takes a pattern invalidation leaves no copy of the old value on the invalidating instance', async () => {
  const { tier, hold } = fakeTier()
  const { core, invalidator } = invalidatorOver(tier)
  const old = encode({ v: 'old', g: 0 }, 60_000)
  Object.assign(tier, { get: async () => ({ bytes: old, pttl: undefined }) })
  // The SCAN has not reached the key yet: Redis still holds the old value.
  let take = (): void => {}
  hold.set('scan p:c:*', new Promise<void>((resolve) => { take = resolve }))
  const invalidating = invalidator.invalidate({ patterns: ['c:*'] })
  await settle()
  assert.deepEqual(await readOne(core, 'c:1', core.history.seq), { value: 'old' }, 'a read while the write runs still gets the old value')
  take()
  await invalidating
  assert.equal(core.local.get('c:1'), undefined, 'the old value read meanwhile is not served from the local tier')
})

test('past MAX_PENDING_KEYS keys queued, however few invalidations hold them, the queue gives way to one flush of the prefix', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const { tier, taken, refuse } = fakeTier()
  const { core, invalidator } = invalidatorOver(tier)
  refuse.add('invalidate').add('bury').add('scan')
  // Import batches of a thousand keys each, while Redis refuses writes: before, 10,000 of them were queued whole.
  const batches = Math.ceil(MAX_PENDING_KEYS / 1000) + 1
  for (let b = 0; b < batches; b++) await invalidator.invalidate({ keys: Array.from({ length: 1000 }, (_v, i) => `lead:${b}:${i}`) })
  assert.equal(invalidator.pendingCount, 1, 'one flush of the prefix owed, not a hundred batches held')
  assert.equal(core.pending.has('anything'), true, 'every key may be old in Redis until the flush')
  refuse.clear()
  t.mock.timers.tick(100)
  await settle()
  assert.deepEqual(taken, ['scan p:*'])
  assert.equal(core.pending.empty, true)
  core.closed = true
  invalidator.close()
})
