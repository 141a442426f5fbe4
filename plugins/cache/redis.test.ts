import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import { Redis } from 'ioredis'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { encode, TOKEN_BYTES } from './codec.js'
import { cachePattern } from './glob.js'
import type { CacheOptions } from './options.js'
import { uniqueName } from '../../test/helpers/database.js'
import { eventually } from '../../test/helpers/eventually.js'
import { recordCommands } from '../../test/helpers/redis-commands.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: Redis[] = []
const managers: CacheManager[] = []
const admin = new Redis(REDIS_URL)

after(async () => {
  await Promise.all(managers.map((m) => m.close()))
  await Promise.all(clients.map((c) => c.quit()))
  await admin.quit()
})

/** Two or more instances sharing one Redis under a prefix of the test's own. */
async function instances (n: number, options: CacheOptions = {}): Promise<CacheManager[]> {
  const prefix = `${uniqueName('cache')}:`
  const out: CacheManager[] = []
  for (let i = 0; i < n; i++) {
    const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0, enableAutoPipelining: true })
    await new Promise((resolve) => client.once('ready', resolve))
    clients.push(client)
    const m = createCacheManager(client, { prefix, ttl: 60, ...options })
    managers.push(m)
    assert.ok(await m.ready())
    out.push(m)
  }
  return out
}

test('a value written by one instance is read by another from Redis, then locally', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  await a.set('lead:1', { name: 'Ann' })
  assert.deepEqual(await b.getOrSetWithSource('lead:1', async () => ({ name: 'from db' })), { value: { name: 'Ann' }, source: 'redis' })
  assert.deepEqual(await b.getOrSetWithSource('lead:1', async () => ({ name: 'from db' })), { value: { name: 'Ann' }, source: 'local' })
})

test('set, delete, tag and pattern invalidations on one instance evict the other instances\' local copies', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  const load = (v: string) => async () => v
  await b.getOrSet('k1', load('v1'))
  await b.getOrSet('k2', load('v2'), { tags: ['t'] })
  await b.getOrSet('p:1', load('p1'))
  await b.getOrSet('p:2', load('p2'))
  await b.getOrSet('other', load('o'))
  assert.equal(b.getStats().local.entries, 5)

  await a.set('k1', 'changed')
  assert.equal(await b.get('k1'), 'changed', 'the write is visible on B as soon as A returns')
  await a.invalidateTags(['t'])
  assert.equal((await b.getOrSetWithSource('k2', load('v2b'), { tags: ['t'] })).source, 'loader')
  await a.deletePattern('p:*')
  assert.equal((await b.getOrSetWithSource('p:1', load('p1b'))).source, 'loader')
  assert.equal((await b.getOrSetWithSource('other', load('x'))).source, 'local', 'unrelated keys stay')
  await a.del('other')
  assert.equal((await b.getOrSetWithSource('other', load('o2'))).value, 'o2')
  assert.equal(a.getStats().invalidations.ackTimeouts, 0, 'every write was acknowledged by B')
})

test('a write\'s invalidation (its keys, its tags, the bus message) is one Redis round trip, not one for each', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  const load = (v: string) => async () => v
  await b.getOrSet('lead', load('old'))
  await b.getOrSet('list', load('old list'), { tags: ['status:new', 'status:*'] })
  const before = a.getStats().redis.roundTrips
  await a.invalidate({ keys: ['lead'], tags: ['status:new', 'status:*'] })
  assert.equal(a.getStats().redis.roundTrips - before, 1)
  assert.equal((await b.getOrSetWithSource('lead', load('new'))).value, 'new', 'the key is gone on the other instance')
  assert.equal((await b.getOrSetWithSource('list', load('new list'), { tags: ['status:new', 'status:*'] })).value, 'new list', 'so is the tagged entry')
  assert.equal(await admin.get(`${a.options.prefix}__tag:status:new`), '1', 'the tag counted up once in Redis')
  assert.equal(a.getStats().invalidations.ackTimeouts, 0, 'the other instance acknowledged')
})

test('a tag counter Redis lost does not take its generation back: the other instances still drop what it tagged', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  const load = (v: string) => async () => v
  await a.invalidateTags(['t'])
  await a.invalidateTags(['t'])
  await b.getOrSet('tagged', load('old'), { tags: ['t'] })
  await admin.del(`${a.options.prefix}__tag:t`)
  await a.invalidateTags(['t'])
  assert.equal((await b.getOrSetWithSource('tagged', load('new'), { tags: ['t'] })).value, 'new')
})

test('after Redis lost a tag counter, an instance that never saw its old generations still invalidates what the others tagged', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  const load = (v: string) => async () => v
  await a.invalidateTags(['t'])
  await a.invalidateTags(['t'])
  await admin.del(`${a.options.prefix}__tag:t`)
  // A publishes generation 3 (its floor), above the counter's fresh 1; B fills under 3.
  await a.invalidateTags(['t'])
  await b.getOrSet('tagged', load('old'), { tags: ['t'] })
  // An instance started since knows only what Redis counts: its write must publish above 3, or B keeps 'old'.
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0, enableAutoPipelining: true })
  await new Promise((resolve) => client.once('ready', resolve))
  clients.push(client)
  const c = createCacheManager(client, { prefix: a.options.prefix, ttl: 60 })
  managers.push(c)
  assert.ok(await c.ready())
  await c.invalidateTags(['t'])
  assert.equal((await b.getOrSetWithSource('tagged', load('new'), { tags: ['t'] })).value, 'new')
  assert.equal(await admin.get(`${a.options.prefix}__tag:t`), '4', 'the counter carries on from the generation published')
})

test('after Redis lost a tag counter, an invalidation with patterns (tags counted apart) also carries the counter on from the generation it published', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  const load = (v: string) => async () => v
  await a.invalidateTags(['t'])
  await a.invalidateTags(['t'])
  await admin.del(`${a.options.prefix}__tag:t`)
  await a.invalidate({ tags: ['t'], patterns: ['nothing:*'] })
  await b.getOrSet('tagged', load('old'), { tags: ['t'] })
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0, enableAutoPipelining: true })
  await new Promise((resolve) => client.once('ready', resolve))
  clients.push(client)
  const c = createCacheManager(client, { prefix: a.options.prefix, ttl: 60 })
  managers.push(c)
  assert.ok(await c.ready())
  await c.invalidate({ tags: ['t'], patterns: ['nothing:*'] })
  assert.equal((await b.getOrSetWithSource('tagged', load('new'), { tags: ['t'] })).value, 'new')
})

test('an instance ignores its own invalidation messages', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  await a.del('x')
  await a.invalidateTags(['y'])
  await eventually(() => b.getStats().invalidations.received === 2, 'both invalidations received', 2000)
  assert.equal(a.getStats().invalidations.received, 0)
  assert.equal(a.getStats().invalidations.published, 2)
})

test('a local copy never outlives the remaining Redis TTL', async () => {
  const [a, b] = await instances(2, { localTtl: 60 }) as [CacheManager, CacheManager]
  await a.set('short', 'v', 2)
  await sleep(1200)
  assert.equal(await b.get('short'), 'v')
  const grace = b.options.grace * 1000
  const pttl = await admin.pttl(`${b.options.prefix}short`)
  assert.ok(b.localTtl('short') <= pttl + 5, `local ${b.localTtl('short')} ms vs redis ${pttl} ms`)
  assert.ok(b.localTtl('short') <= 2000 + grace - 1000)
})

test('100 concurrent misses on each of two instances run the loader once per instance at most', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  let calls = 0
  const loader = async () => {
    calls++
    await sleep(30)
    return 'v'
  }
  await Promise.all([...Array.from({ length: 100 }, () => a.getOrSet('hot', loader)), ...Array.from({ length: 100 }, () => b.getOrSet('hot', loader))])
  assert.ok(calls <= 2, `loader ran ${calls} times`)
})

test('mget serves local hits locally and fetches the rest in one round trip', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  await a.mset(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`m:${i}`, i])))
  await b.getOrSet('m:0', async () => -1)
  await b.getOrSet('m:1', async () => -1)
  const before = b.getStats()
  const values = await b.mget(Array.from({ length: 100 }, (_, i) => `m:${i}`))
  const after = b.getStats()
  assert.deepEqual(values, Array.from({ length: 100 }, (_, i) => i))
  assert.equal(after.redis.roundTrips - before.redis.roundTrips, 1)
  assert.equal(after.local.hits - before.local.hits, 2)
  assert.equal(after.redis.hits - before.redis.hits, 98)
})

test('mset sends chunked pipelines of SET with PX', async () => {
  const [a] = await instances(1) as [CacheManager]
  const before = a.getStats().redis.roundTrips
  await a.mset(Array.from({ length: 1200 }, (_, i) => [`s:${i}`, { i }] as [string, unknown]), 30)
  assert.equal(a.getStats().redis.roundTrips - before, 4, '1200 entries in 3 pipelines of at most 500, then one PUBLISH')
  const pttl = await admin.pttl(`${a.options.prefix}s:1199`)
  assert.ok(pttl > 29000 && pttl <= (30 + a.options.grace) * 1000)
})

test('pattern deletion uses SCAN and UNLINK and an escaped id cannot widen it', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  await a.mset(Array.from({ length: 3000 }, (_, i) => [`lead:${i}:profile`, i] as [string, unknown]))
  await a.set('lead:*:profile', 'star')
  // The commands of a's own client.
  const commands = recordCommands(clients.at(-2) as Redis)
  await a.deletePattern(cachePattern`lead:${'*'}:*`).finally(commands.stop)
  const sent = commands.sent().map((command) => command.split(' ')[0])
  assert.ok(!sent.includes('keys'), 'never KEYS')
  assert.ok(sent.includes('scan'), 'SCAN')
  assert.ok(sent.includes('unlink'), 'UNLINK')
  assert.equal(await b.get('lead:*:profile'), undefined)
  assert.equal(await b.get('lead:7:profile'), 7, 'the escaped star matched only itself')
  await a.deletePattern('lead:*')
  const left = await admin.keys(`${a.options.prefix}lead:*`)
  assert.equal(left.length, 0)
})

test('tag invalidation is one INCR per tag, whatever the number of tagged entries', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  for (let i = 0; i < 200; i++) await a.getOrSet(`t:${i}`, async () => i, { tags: ['leads'] })
  const keysBefore = (await admin.keys(`${a.options.prefix}*`)).length
  const before = a.getStats().redis.roundTrips
  await a.invalidateTags(['leads'])
  assert.ok(a.getStats().redis.roundTrips - before <= 3, 'INCR, PUBLISH and nothing per entry')
  assert.equal((await admin.keys(`${a.options.prefix}*`)).length, keysBefore + 1, 'one counter key: no index sets, nothing deleted')
  assert.equal((await b.getOrSetWithSource('t:5', async () => 'new', { tags: ['leads'] })).value, 'new')
})

test('values come back intact through Redis', async () => {
  const [a, b] = await instances(2, { localEnabled: false }) as [CacheManager, CacheManager]
  const value = { at: new Date('2026-01-01T00:00:00Z'), big: 2n ** 70n, map: new Map([[1, { x: 'y' }]]), set: new Set([1, 2]), buf: Buffer.from([0, 255, 7]) }
  await a.set('typed', value)
  const back = await b.get<typeof value>('typed')
  assert.ok(back)
  assert.ok(back.at instanceof Date && back.at.getTime() === value.at.getTime())
  assert.equal(back.big, value.big)
  assert.deepEqual(back.map.get(1), { x: 'y' })
  assert.deepEqual([...back.set], [1, 2])
  assert.ok(Buffer.isBuffer(back.buf) && back.buf.equals(value.buf))
})

test('a delete on another instance during a load keeps the old value out of Redis', async () => {
  const [a, b] = await instances(2) as [CacheManager, CacheManager]
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const loading = b.getOrSet('race', async () => {
    await gate
    return 'read before the delete'
  })
  await sleep(20)
  await a.del('race')
  release()
  assert.equal(await loading, 'read before the delete')
  assert.equal((await a.getOrSetWithSource('race', async () => 'after')).value, 'after', 'the old value was not written back')
  assert.equal(b.getStats().uncachedLoads, 1)
})

test('getStats reports every tier', async () => {
  const [a] = await instances(1) as [CacheManager]
  await a.getOrSet('s', async () => 1)
  await a.getOrSet('s', async () => 1)
  const s = a.getStats()
  assert.equal(s.mode, 'two-tier')
  assert.equal(s.local.hits, 1)
  assert.equal(s.loader.calls, 1)
  assert.equal(s.redis.misses, 1)
  assert.equal(s.redis.breaker, 'closed')
  assert.equal(s.redis.connected, true)
  assert.ok(s.redis.latency.count >= 2)
  assert.equal(s.hitRate, 0.5)
})

test('a loaded value that cacheIf refuses is returned but stored in neither tier (a "not found" cannot evict warm entries)', async () => {
  const [a] = await instances(1)
  assert.ok(a)
  let loads = 0
  const notFound = async (): Promise<null> => { loads++; return null }
  assert.equal(await a.getOrSet('missing', notFound, { cacheIf: (v) => v !== null }), null)
  assert.equal(await a.getOrSet('missing', notFound, { cacheIf: (v) => v !== null }), null)
  assert.equal(loads, 2, 'asked again: nothing was kept')
  assert.equal(a.peek('missing'), undefined)
  assert.deepEqual(await admin.keys(`${a.options.prefix}missing*`), [])
  assert.equal(await a.getOrSet('found', async () => 'yes', { cacheIf: (v) => v !== null }), 'yes')
  assert.equal(a.peek('found'), 'yes', 'an accepted value is cached as always')
})

test('an entry the previous version wrote in Redis is a hit for this version during a rolling deploy', async () => {
  const [a] = await instances(1, { localEnabled: false }) as [CacheManager]
  const value = { data: [{ id: 'a', at: new Date('2026-01-02T03:04:05.678Z') }], nextCursor: null }
  // The previous layout: 0xca, kind 1, a 16-byte write id, V8's structured clone of the envelope.
  const previous = Buffer.concat([Buffer.from([0xca, 0x01]), randomBytes(16), v8.serialize({ v: value, g: 0 })])
  await admin.set(`${a.options.prefix}old`, previous, 'PX', 60_000)
  assert.deepStrictEqual(await a.getOrSetWithSource('old', async () => 'from the loader'), { value, source: 'redis' })
  assert.equal(a.getStats().decodeErrors, 0)
})

test('a corrupted entry in Redis is a miss: the loader answers and its value replaces the entry', async () => {
  const [a, b] = await instances(2, { localEnabled: false }) as [CacheManager, CacheManager]
  await a.set('k', { data: [{ id: 'a', score: 1 }] })
  const stored = await admin.getBuffer(`${a.options.prefix}k`) as Buffer
  assert.equal(stored[1], 0x03, 'plain JSON is stored as JSON text, after its expiry')
  await admin.set(`${a.options.prefix}k`, stored.subarray(0, stored.length - 5), 'PX', 60_000)
  assert.deepStrictEqual(await b.getOrSetWithSource('k', async () => 'reloaded'), { value: 'reloaded', source: 'loader' })
  assert.equal(b.getStats().decodeErrors, 1)
  assert.deepStrictEqual(await a.getOrSetWithSource('k', async () => 'not called'), { value: 'reloaded', source: 'redis' })
  // An envelope whose tags are not a record (a foreign writer's "t": null): a miss for get too, not a TypeError.
  const valid = await admin.getBuffer(`${a.options.prefix}k`) as Buffer
  const nullTags = Buffer.concat([valid.subarray(0, TOKEN_BYTES + 16), Buffer.from('{"v":1,"g":0,"t":null}')])
  await admin.set(`${a.options.prefix}t`, nullTags, 'PX', 60_000)
  assert.equal(await b.get('t'), undefined)
})

test('the fresh and grace periods come from the entry\'s own expiry, not from how long Redis still keeps it', async () => {
  const [a] = await instances(1, { localTtl: 60 }) as [CacheManager]
  const key = (k: string) => `${a.options.prefix}${k}`
  const failing = async (): Promise<string> => { throw new Error('database down') }
  // Fresh for 1 s more by its expiry, though Redis keeps it 60 s: the local copy is fresh for at most that second.
  await admin.set(key('fresh'), encode({ v: 'fresh', g: 5000 }, 1000), 'PX', 60_000)
  assert.deepEqual(await a.getOrSetWithSource('fresh', failing), { value: 'fresh', source: 'redis' })
  assert.ok(a.localTtl('fresh') > 0 && a.localTtl('fresh') <= 1000, `local copy fresh for ${a.localTtl('fresh')} ms`)
  // Past its fresh-until, within its grace-until: not a hit; served only when the loader fails.
  await admin.set(key('grace'), encode({ v: 'stale', g: 5000 }, -1000), 'PX', 60_000)
  assert.deepEqual(await a.getOrSetWithSource('grace', failing), { value: 'stale', source: 'stale' })
  assert.deepEqual(await a.getOrSetWithSource('grace', async () => 'reloaded'), { value: 'reloaded', source: 'loader' })
  // Past its grace-until: a miss, and nothing stale to serve, even though Redis still holds it.
  await admin.set(key('gone'), encode({ v: 'too old', g: 1000 }, -5000), 'PX', 60_000)
  await assert.rejects(a.getOrSetWithSource('gone', failing), /database down/)
  assert.deepEqual(await a.mget(['fresh', 'grace', 'gone']), ['fresh', 'reloaded', undefined])
  assert.equal(a.getStats().decodeErrors, 0)
})

test('tombstoneTtl is how long a deleted key\'s tombstone stays in Redis', async () => {
  for (const [tombstoneTtl, expectedMs] of [[undefined, 60_000], [5, 5_000]] as const) {
    const [a] = await instances(1, tombstoneTtl === undefined ? {} : { tombstoneTtl }) as [CacheManager]
    await a.set('lead:1', { name: 'Ann' })
    await a.invalidate({ keys: ['lead:1'] })
    const pttl = await admin.pttl(`${a.options.prefix}lead:1`)
    assert.ok(pttl > expectedMs - 2_000 && pttl <= expectedMs, `tombstoneTtl ${String(tombstoneTtl)}: the tombstone lives ${pttl} ms`)
  }
})

test('instanceId names the instance on the invalidation bus: its acknowledgements channel carries it', async () => {
  const instanceId = `named-${process.pid}`
  const [a] = await instances(1, { instanceId }) as [CacheManager]
  const channel = `${a.options.prefix}__invalidate:ack:${instanceId}`
  await eventually(async () => {
    const [, subscribers] = await admin.pubsub('NUMSUB', channel) as [string, number]
    return subscribers === 1
  }, `one subscriber on ${channel}`)
})
