import assert from 'node:assert/strict'
import v8 from 'node:v8'
import { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import { createCacheManager, type CacheManager } from '@lead-chassis/plugins/cache'
import { decodeCacheEntry as decode, encodeCacheEntry as encode } from '@lead-chassis/plugins/cache'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { createBentoCache } from './bentocache.js'
import { opsPerSecond } from './lib.js'

// The micro rows of bench:cache. Each row sets up only what it reads, in the process that measures it
// (cache-row.ts): no row shares a heap, a JIT state, a client or a connection with another.

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

// The value of the comparison rows is a page of 20 leads as the api serves it: plain JSON (dates as ISO text), which
// bentocache, storing JSON text in Redis, gives back unchanged too. The same page with Date fields, which only our
// V8 codec gives back as Dates, has a row of its own.
const lead = (i: number, at: Date | string) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, firstName: 'Ann', lastName: 'Lee', email: `ann${i}@example.com`, phone: '(555) 010-2000', product: 'auto', state: 'CA', status: 'new', score: 50, source: 'web', createdAt: at, updatedAt: at })
const value = { data: Array.from({ length: 20 }, (_, i) => lead(i, new Date().toISOString())), nextCursor: null }
const withDates = { data: Array.from({ length: 20 }, (_, i) => lead(i, new Date())), nextCursor: null }

export interface Prepared {
  /** Performs `n` operations. */
  run: (n: number) => Promise<unknown>
  close?: () => Promise<unknown>
  /** Appended to the row's name once measured (what the run observed, such as round trips per call). */
  note?: () => string
}

export interface Row {
  group: 'local' | 'redis' | 'decode' | 'mget'
  name: string
  /** Operations timed. */
  ops: number
  /** Operations run before the timed ones, so that the timed ones meet optimized code and an open connection. */
  warmup: number
  prepare: () => Promise<Prepared>
  /** The bentocache row this one is compared with. */
  versus?: string
  /**
   * The raw read of the same value from Redis and its JSON.parse, the writes of a tick in one (as the cache's Redis
   * tier and an auto-pipelined client send them): a cache's read does both and more, so a row well under it measured
   * something other than the read.
   */
  floor?: string
}

const N = 1_000_000
const M = 20_000
// A Redis row's reads before its timed ones: timed after 5,000, every way of reading still ran part of its warm-up,
// the raw floor's and bentocache's medians 18-48% above theirs after 50,000 (docs/benchmarks.md#cache).
const REDIS_WARMUP = 50_000
const IN_FLIGHT = 64
// In the hot-key row with writes: one operation in this many writes another key.
const WRITE_EVERY = 8
// The pages the spread rows read in turn: 64 reads in flight then ask 64 different keys, so each is a read of its own
// (reads of one key asked together share one in our cache), and the rows compare what a read costs.
const SPREAD = 256
const spread = (name: string): string[] => Array.from({ length: SPREAD }, (_, i) => `${name}${i}`)
const spreadKeys = spread('s')
/** The next key of `keys`, in turn. */
const inTurn = (keys: string[]): () => string => {
  let i = 0
  return () => keys[i++ % keys.length] as string
}
const FLOOR = 'Redis hit: raw GET + JSON.parse, the writes of a tick in one'
const prefix = (): string => `bench:${process.pid}:`

const loop = (op: () => unknown) => async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) op()
}
const awaited = (op: () => Promise<unknown>) => async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await op()
}
const inFlight = (op: () => Promise<unknown>, concurrency = IN_FLIGHT) => async (n: number): Promise<unknown> => opsPerSecond(n, concurrency, op)

async function localCache (): Promise<CacheManager> {
  const local = createCacheManager(undefined)
  await local.set('k', value)
  return local
}

function lru (bounded: boolean): LRUCache<string, object> {
  if (!bounded) {
    const cache = new LRUCache<string, object>({ max: 10000 })
    cache.set('k', value)
    return cache
  }
  const cache = new LRUCache<string, object>({ max: 10000, maxSize: 64 * 1024 * 1024, noDeleteOnStaleGet: true })
  cache.set('k', value, { ttl: 60_000, size: 5000 })
  return cache
}

async function localBento (): Promise<Prepared & { bento: ReturnType<typeof createBentoCache>['bento'] }> {
  const made = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix()}bento-local` })
  await made.bento.set({ key: 'k', value })
  return { bento: made.bento, run: async () => undefined, close: async () => { await made.bento.clear(); await made.close() } }
}

/** Our cache over the client the redis plugin makes, local tier off, with the key `k` and the spreads `s`, `dates` and `legacy` in Redis. */
async function ours (autoPipelining: boolean): Promise<{ cache: CacheManager, close: () => Promise<void> }> {
  const client = createRedisClient({ url: REDIS_URL, autoPipelining })
  const p = `${prefix()}${autoPipelining ? 'ap' : 'plain'}:`
  const cache = createCacheManager(client, { prefix: p, localEnabled: false, redisTimeoutMs: 1000 })
  if (!await cache.ready(30_000)) throw new Error('the cache\'s invalidation bus did not subscribe')
  await cache.set('k', value)
  await cache.mset(spreadKeys.map((k) => [k, value] as [string, unknown]))
  await cache.mset(spread('dates').map((k) => [k, withDates] as [string, unknown]))
  // The same page as the previous format stored it (kind 2, no expiry inside), as found during a rolling deploy.
  const legacy = encode({ v: value, g: 0 })
  for (const k of spread('legacy')) await client.set(`${p}${k}`, legacy, 'PX', 3_600_000)
  assert.deepEqual(await cache.get('k'), value)
  return { cache, close: async () => { await cache.deletePattern('*'); await cache.close(); await client.quit() } }
}

/**
 * A row of our cache's Redis hits: `keys` read in turn (one hot key, whose reads in flight share one, or the spread,
 * each read its own). Only a row of reads of their own is held to the raw read's floor.
 */
function oursRow (name: string, autoPipelining: boolean, keys: string[], versus?: string, writeEvery = 0): Row {
  return {
    group: 'redis',
    name,
    ops: M,
    warmup: REDIS_WARMUP,
    ...(versus ? { versus } : {}),
    ...(keys.length > 1 ? { floor: FLOOR } : {}),
    prepare: async () => {
      const { cache, close } = await ours(autoPipelining)
      const next = inTurn(keys)
      const write = otherWrites(writeEvery, (key) => cache.set(key, 1))
      return { run: inFlight(() => write() ?? cache.get(next())), close }
    }
  }
}

/**
 * With `every` above 0, one operation in `every` is a write of another key (64 of them in turn), as a busy service
 * writes while it serves a hot page; undefined for the others, which read.
 */
function otherWrites (every: number, set: (key: string) => Promise<unknown>): () => Promise<unknown> | undefined {
  let n = 0
  return () => (every > 0 && ++n % every === 0 ? set(`other:${n % 64}`) : undefined)
}

/** bentocache with Redis alone (no L1), over an ioredis client with or without auto-pipelining, reading `keys` in turn. */
function bentoRedisRow (name: string, autoPipelining: boolean, keys: string[], writeEvery = 0): Row {
  return {
    group: 'redis',
    name,
    ops: M,
    warmup: REDIS_WARMUP,
    ...(keys.length > 1 ? { floor: FLOOR } : {}),
    prepare: async () => {
      const made = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix()}bento-l2`, local: false, autoPipelining })
      for (const key of keys) await made.bento.set({ key, value })
      assert.deepEqual(await made.bento.get({ key: keys[0] as string }), value)
      const next = inTurn(keys)
      const write = otherWrites(writeEvery, (key) => made.bento.set({ key, value: 1 }))
      return { run: inFlight(() => write() ?? made.bento.get({ key: next() })), close: async () => { await made.bento.clear(); await made.close() } }
    }
  }
}

/** A raw ioredis client with the page under `raw`, as JSON text. */
async function raw (): Promise<{ redis: Redis, key: string, close: () => Promise<unknown> }> {
  const redis = new Redis(REDIS_URL)
  const key = `${prefix()}raw`
  await redis.set(key, JSON.stringify(value))
  return { redis, key, close: async () => { await redis.del(key); await redis.quit() } }
}

/** `GET`s whose writes after the first of a tick wait for its end and leave together, as the cache's tier sends them. */
function tickWrites (redis: Redis): (key: string) => Promise<string | null> {
  let held = false
  return (key) => {
    const read = redis.get(key)
    if (!held) {
      held = true
      redis.stream.cork()
      process.nextTick(() => { held = false; redis.stream.uncork() })
    }
    return read
  }
}

const jsonEntry = (): Buffer => encode({ v: value, g: 0 }, 60_000)

export const rows: Row[] = [
  { group: 'local', name: 'local hit: raw lru-cache get, max only (sync)', ops: N, warmup: N, prepare: async () => { const c = lru(false); return { run: loop(() => c.get('k')) } } },
  { group: 'local', name: 'local hit: raw lru-cache get, TTL + byte bound like the local tier (sync)', ops: N, warmup: N, prepare: async () => { const c = lru(true); return { run: loop(() => c.get('k')) } } },
  { group: 'local', name: 'local hit: cache.peek (sync)', ops: N, warmup: N, prepare: async () => { const c = await localCache(); return { run: loop(() => c.peek('k')), close: () => c.close() } } },
  { group: 'local', name: 'local hit: raw lru-cache get behind await', ops: N, warmup: N, prepare: async () => { const c = lru(false); const get = async (k: string): Promise<object | undefined> => c.get(k); return { run: awaited(() => get('k')) } } },
  { group: 'local', name: 'local hit: await cache.get', ops: N, warmup: N, versus: 'bento-get', prepare: async () => { const c = await localCache(); return { run: awaited(() => c.get('k')), close: () => c.close() } } },
  { group: 'local', name: 'local hit: await cache.getOrSet', ops: N, warmup: N, versus: 'bento-getOrSet', prepare: async () => { const c = await localCache(); const loader = async () => value; return { run: awaited(() => c.getOrSet('k', loader)), close: () => c.close() } } },
  { group: 'local', name: 'bento-get', ops: N / 10, warmup: N / 10, prepare: async () => { const b = await localBento(); return { ...b, run: awaited(() => b.bento.get({ key: 'k' })) } } },
  { group: 'local', name: 'bento-getOrSet', ops: N / 10, warmup: N / 10, prepare: async () => { const b = await localBento(); const loader = async () => value; return { ...b, run: awaited(() => b.bento.getOrSet({ key: 'k', factory: loader })) } } },
  { group: 'redis', name: `Redis hit: raw ioredis GET, ${IN_FLIGHT} in flight`, ops: M, warmup: REDIS_WARMUP, prepare: async () => { const r = await raw(); return { run: inFlight(() => r.redis.get(r.key)), close: r.close } } },
  { group: 'redis', name: 'Redis hit: raw GET + JSON.parse, each written as it is asked', ops: M, warmup: REDIS_WARMUP, prepare: async () => { const r = await raw(); return { run: inFlight(async () => JSON.parse(await r.redis.get(r.key) as string)), close: r.close } } },
  { group: 'redis', name: FLOOR, ops: M, warmup: REDIS_WARMUP, prepare: async () => { const r = await raw(); const get = tickWrites(r.redis); return { run: inFlight(async () => JSON.parse(await get(r.key) as string)), close: r.close } } },
  oursRow(`Redis hit: cache.get, local tier off, auto-pipelining off (our default), ${SPREAD} keys in turn`, false, spreadKeys, 'bento-redis'),
  oursRow(`Redis hit: cache.get, local tier off, auto-pipelining on, ${SPREAD} keys in turn`, true, spreadKeys, 'bento-redis-ap'),
  oursRow(`Redis hit: cache.get, local tier off, one hot key (${IN_FLIGHT} reads in flight share one), auto-pipelining off`, false, ['k'], 'bento-redis-hot'),
  oursRow(`Redis hit: cache.get, local tier off, one hot key, one operation in ${WRITE_EVERY} a write of another key, auto-pipelining off`, false, ['k'], 'bento-redis-hot-writes', WRITE_EVERY),
  oursRow(`Redis hit: cache.get, an entry of the previous format (GET, then PTTL + GET), auto-pipelining off, ${SPREAD} keys in turn`, false, spread('legacy'), 'bento-redis'),
  oursRow(`Redis hit: cache.get, an entry of the previous format (GET, then PTTL + GET), auto-pipelining on, ${SPREAD} keys in turn`, true, spread('legacy'), 'bento-redis-ap'),
  oursRow(`Redis hit: cache.get, the same page with Date fields (V8 codec), auto-pipelining off, ${SPREAD} keys in turn`, false, spread('dates')),
  bentoRedisRow('bento-redis', false, spreadKeys),
  bentoRedisRow('bento-redis-ap', true, spreadKeys),
  bentoRedisRow('bento-redis-hot', false, ['k']),
  bentoRedisRow('bento-redis-hot-writes', false, ['k'], WRITE_EVERY),
  { group: 'decode', name: 'decode alone: our entry as JSON text (kind 3)', ops: M, warmup: M, versus: 'bento-decode', prepare: async () => { const e = jsonEntry(); return { run: loop(() => decode(e)) } } },
  {
    group: 'decode',
    name: 'decode alone: the same value as V8 structured clone (kind 1, no expiry inside)',
    ops: M,
    warmup: M,
    versus: 'bento-decode',
    prepare: async () => {
      const json = jsonEntry()
      const entry = Buffer.concat([json.subarray(0, 2), Buffer.alloc(16), v8.serialize({ v: value, g: 0 })])
      entry[1] = 0x01
      return { run: loop(() => decode(entry)) }
    }
  },
  {
    group: 'decode',
    name: 'bento-decode',
    ops: M,
    warmup: M,
    prepare: async () => {
      // Both clients turn the reply's bytes into text before JSON.parse (ioredis does it for bentocache): both rows do.
      const made = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix()}bento-l2`, local: false })
      await made.bento.set({ key: 'k', value })
      const redis = new Redis(REDIS_URL)
      const bytes = await redis.getBuffer(`${prefix()}bento-l2:k`)
      assert.ok(bytes, 'bentocache\'s Redis entry is where its key naming puts it')
      await made.bento.clear()
      await made.close()
      await redis.quit()
      return { run: loop(() => JSON.parse(bytes.toString())) }
    }
  },
  {
    group: 'mget',
    name: 'mget 100 keys: raw MGET + JSON.parse',
    ops: 5000,
    warmup: 1000,
    prepare: async () => {
      const redis = new Redis(REDIS_URL)
      const keys = Array.from({ length: 100 }, (_, i) => `${prefix()}raw:m:${i}`)
      await redis.mset(Object.fromEntries(keys.map((k, i) => [k, JSON.stringify(lead(i, new Date().toISOString()))])))
      return {
        run: inFlight(async () => (await redis.mget(keys)).map((s) => JSON.parse(s as string) as unknown), 16),
        close: async () => { await redis.del(...keys); await redis.quit() }
      }
    }
  },
  {
    group: 'mget',
    name: 'mget 100 keys: cache.mget',
    ops: 5000,
    warmup: 1000,
    prepare: async () => {
      const { cache, close } = await ours(false)
      const keys = Array.from({ length: 100 }, (_, i) => `m:${i}`)
      await cache.mset(keys.map((k, i) => [k, lead(i, new Date().toISOString())] as [string, unknown]))
      let before = 0
      let calls = 0
      const run = inFlight(() => cache.mget(keys), 16)
      return {
        run: async (n: number) => { before = cache.getStats().redis.roundTrips; calls = n; return run(n) },
        note: () => `(${((cache.getStats().redis.roundTrips - before) / calls).toFixed(2)} round trips per call)`,
        close
      }
    }
  }
]

export const bentoNames: Record<string, string> = {
  'bento-get': 'local hit: bentocache await get (L1 memory, serialize: false)',
  'bento-getOrSet': 'local hit: bentocache await getOrSet (L1 memory, serialize: false)',
  'bento-redis': `Redis hit: bentocache get, Redis only (no L1), auto-pipelining off, ${SPREAD} keys in turn`,
  'bento-redis-ap': `Redis hit: bentocache get, Redis only (no L1), auto-pipelining on, ${SPREAD} keys in turn`,
  'bento-redis-hot': 'Redis hit: bentocache get, Redis only (no L1), one hot key, auto-pipelining off',
  'bento-redis-hot-writes': `Redis hit: bentocache get, Redis only (no L1), one hot key, one operation in ${WRITE_EVERY} a write of another key, auto-pipelining off`,
  'bento-decode': 'decode alone: bentocache\'s entry (UTF-8 bytes to text, JSON.parse)'
}
