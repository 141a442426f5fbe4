import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { composeSchema, loadConfig } from '../chassis/index.js'
import { CircuitBreaker } from '../redis/index.js'
import { cacheConfigFragment, cacheOptionsFromConfig, type CacheConfig } from './config.js'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { HotKeys } from './hot-keys.js'
import type { CacheOptions } from './options.js'
import { cachePlugin } from './plugin.js'
import { RedisTier } from './redis-tier.js'
import { CacheCounters } from './stats.js'
import { LoaderRegistry } from './loaders.js'
import { Warmer } from './warmer.js'
import { uniqueName } from '../../test/helpers/database.js'
import { startPrivateRedis, type PrivateRedis } from '../../test/helpers/private-redis.js'
import { eventually } from '../../test/helpers/eventually.js'
import { cacheOptionFromEnv } from '../../test/helpers/cache-options.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: Redis[] = []
const managers: CacheManager[] = []
const prefixes: string[] = []
const admin = new Redis(REDIS_URL)

after(async () => {
  await Promise.all(managers.map((m) => m.close()))
  for (const prefix of prefixes) {
    const keys = await admin.keys(`${prefix}*`)
    if (keys.length > 0) await admin.unlink(...keys)
  }
  await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())))
  await admin.quit()
})

async function client (url = REDIS_URL, commandTimeout = 1000): Promise<Redis> {
  const c = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout })
  await new Promise((resolve) => c.once('ready', resolve))
  clients.push(c)
  return c
}

function newPrefix (): string {
  const prefix = `${uniqueName('warm')}:`
  prefixes.push(prefix)
  return prefix
}

async function instance (prefix: string, options: CacheOptions = {}, url = REDIS_URL): Promise<CacheManager> {
  const m = createCacheManager(await client(url, options.redisTimeoutMs ?? 1000), { prefix, ttl: 60, redisTimeoutMs: 1000, hotKeysIntervalMs: 60_000, ...options })
  managers.push(m)
  assert.ok(await m.ready(5000))
  return m
}

/**
 * Entries k0..k(n-1) in Redis, the first `hot` of them read 400 times, the others 4 times (local hits are sampled one
 * in 16, so a cold key scores at most 49 and a hot one about 400); the counts reach the fleet's top-K.
 */
async function populate (m: CacheManager, n: number, hot = 10): Promise<string[]> {
  const keys = Array.from({ length: n }, (_, i) => `k${i}`)
  for (const [i, key] of keys.entries()) {
    for (let r = 0; r < (i < hot ? 400 : 4); r++) await m.getOrSet(key, async () => ({ key }))
  }
  await m.flushHotKeys()
  return keys
}

test('a restarted instance serves its hottest keys from its local tier before it reports ready', async () => {
  const prefix = newPrefix()
  const first = await instance(prefix)
  const keys = await populate(first, 20)
  await first.close()

  const app = Fastify()
  app.decorate('redis', await client())
  await app.register(cachePlugin, { prefix, ttl: 60, redisTimeoutMs: 1000 })
  await app.ready()
  try {
    for (const key of keys) assert.deepEqual(app.cache.peek(key), { key }, `${key} is in the local tier once the app is ready`)
    assert.equal(app.cache.getStats().warming.warmed, 20)
    assert.equal(app.cache.getStats().redis.hits, 0, 'warming is not counted as reads')
  } finally {
    await app.close()
  }
})

test('warming with a Redis client that still refuses commands (connecting, no offline queue) warms nothing instead of failing the boot', async () => {
  // The services' client has no offline queue: until it has connected, every command fails at once. A slow start
  // (seen under valgrind) can bring the invalidation bus up before it, and the cache then warms through it.
  const connecting = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null })
  clients.push(connecting)
  const tier = new RedisTier(connecting, 1000, new CircuitBreaker(5, 1000, () => {}), new CacheCounters())
  const hot = new HotKeys(100, tier, newPrefix(), 60_000)
  const warmer = new Warmer(tier, hot, new LoaderRegistry(100), { fill: async () => 0, rerun: async () => {}, lost: () => {} }, { prefix: newPrefix(), enabled: true, maxEntries: 10, timeoutMs: 1000 })
  assert.equal(await warmer.warm(), 0)
})

test('with warming off (CACHE_WARM_ENABLED=false) a restarted instance starts with an empty local tier', async () => {
  const prefix = newPrefix()
  await populate(await instance(prefix), 10)
  const restarted = await instance(prefix, cacheOptionFromEnv('warmEnabled', { CACHE_WARM_ENABLED: 'false' }))
  assert.equal(await restarted.warm(), 0)
  assert.equal(restarted.getStats().local.entries, 0)
  assert.equal(restarted.peek('k0'), undefined)
})

test('warming copies at most CACHE_WARM_MAX_ENTRIES entries, the hottest ones', async () => {
  const prefix = newPrefix()
  const keys = await populate(await instance(prefix), 30)
  const restarted = await instance(prefix, cacheOptionFromEnv('warmMaxEntries', { CACHE_WARM_MAX_ENTRIES: '10' }))
  assert.equal(await restarted.warm(), 10)
  assert.equal(restarted.getStats().local.entries, 10)
  for (const key of keys.slice(0, 10)) assert.deepEqual(restarted.peek(key), { key })
  for (const key of keys.slice(10)) assert.equal(restarted.peek(key), undefined)
})

test('warming gives up after CACHE_WARM_TIMEOUT_MS when Redis hangs, so a start is never held longer', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const prefix = 'hang:'
  await populate(await instance(prefix, {}, redis.url), 10)
  const restarted = await instance(prefix, { ...cacheOptionFromEnv('warmTimeoutMs', { CACHE_WARM_TIMEOUT_MS: '300' }), redisTimeoutMs: 20_000 }, redis.url)
  redis.pause()
  t.after(() => redis.resume())
  const started = performance.now()
  assert.equal(await restarted.warm(), 0)
  const elapsed = performance.now() - started
  assert.ok(elapsed >= 250 && elapsed < 3000, `warming returned after ${elapsed.toFixed(0)} ms`)
  redis.resume()
})

test('the warming variables reach the cache options, and a ratio of 1 or more is refused', () => {
  const config = loadConfig<CacheConfig>(composeSchema(cacheConfigFragment), {
    dotenv: false,
    env: { CACHE_WARM_ENABLED: 'false', CACHE_WARM_MAX_ENTRIES: '7', CACHE_WARM_TIMEOUT_MS: '300', CACHE_REFRESH_AHEAD_RATIO: '0', CACHE_HOT_KEYS_MAX: '0', CACHE_HOT_KEYS_INTERVAL_MS: '100' }
  })
  const o = cacheOptionsFromConfig(config)
  assert.deepEqual([o.warmEnabled, o.warmMaxEntries, o.warmTimeoutMs, o.refreshAheadRatio, o.hotKeysMax, o.hotKeysIntervalMs], [false, 7, 300, 0, 0, 100])
  assert.throws(() => createCacheManager(undefined, { refreshAheadRatio: 1 }), { code: 'CACHE_INVALID_OPTIONS' })
})

test('a cache timer past what a Node timer holds (fired at once: every wait over at once, the hot-key flush in a loop) is refused', () => {
  assert.throws(() => createCacheManager(undefined, { redisTimeoutMs: 2 ** 31, breakerCooldownMs: 2 ** 31, ackTimeoutMs: 3e9, warmTimeoutMs: 3e9, hotKeysIntervalMs: 3e9 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CACHE_INVALID_OPTIONS')
    for (const problem of ['redisTimeoutMs must be at most 107374182', 'breakerCooldownMs must be at most 2147483647', 'ackTimeoutMs must be at most', 'warmTimeoutMs must be at most', 'hotKeysIntervalMs must be at most']) assert.match(e.message, new RegExp(problem))
    return true
  })
})

test('hot-key counts reach Redis every CACHE_HOT_KEYS_INTERVAL_MS without an explicit flush', async () => {
  const prefix = newPrefix()
  const m = await instance(prefix, cacheOptionFromEnv('hotKeysIntervalMs', { CACHE_HOT_KEYS_INTERVAL_MS: '100' }))
  await m.getOrSet('popular', async () => 1)
  await eventually(async () => Number(await admin.zscore(`${prefix}__hot`, 'popular')) >= 1, 'the key is counted hot')
  const slow = newPrefix()
  const idle = await instance(slow, cacheOptionFromEnv('hotKeysIntervalMs', { CACHE_HOT_KEYS_INTERVAL_MS: '60000' }))
  await idle.getOrSet('popular', async () => 1)
  await sleep(500)
  assert.equal(await admin.exists(`${slow}__hot`), 0, 'nothing is written before the interval')
})

test('with CACHE_HOT_KEYS_MAX=0 nothing is counted, so a restarted instance has nothing to warm', async () => {
  const prefix = newPrefix()
  const m = await instance(prefix, cacheOptionFromEnv('hotKeysMax', { CACHE_HOT_KEYS_MAX: '0' }))
  for (let i = 0; i < 100; i++) await m.getOrSet('k', async () => 1)
  await m.flushHotKeys()
  await m.close()
  assert.equal(await admin.exists(`${prefix}__hot`), 0)
  const restarted = await instance(prefix)
  assert.equal(await restarted.warm(), 0)
  assert.equal(restarted.peek('k'), undefined)
})

test('hot-key counting stays bounded in memory and in Redis with 1M distinct keys', async () => {
  const prefix = newPrefix()
  const c = await client()
  const tier = new RedisTier(c, 2000, new CircuitBreaker(5, 1000, () => {}), new CacheCounters())
  const hot = new HotKeys(1000, tier, prefix, 60_000)
  let maxTracked = 0
  for (let i = 0; i < 1_000_000; i++) {
    hot.touch(`cold:${i}`)
    if (i % 100 === 0) hot.touch('hot')
    if (hot.tracked > maxTracked) maxTracked = hot.tracked
    if (i % 50_000 === 49_999) await hot.flush()
  }
  assert.ok(maxTracked <= 1000, `at most 1000 keys counted locally (saw ${maxTracked})`)
  assert.ok(await admin.zcard(`${prefix}__hot`) <= 1000)
  assert.equal(hot.rank('hot'), 0, 'the one hot key among a million cold ones is the hottest')
  assert.equal(hot.tracked, 0)
})

/**
 * Three instances on a private Redis that all read five hot keys (and so remember their loaders); `lose` makes Redis
 * lose its data. Each loader must then run exactly once across the three, and its value be back in Redis.
 */
async function rerunOnceAfter (redis: PrivateRedis, lose: (direct: Redis) => Promise<void>): Promise<void> {
  const prefix = 'rerun:'
  const opened = clients.length
  // No local tier: every read is a miss, which is counted (and remembers its loader) exactly, not sampled.
  const fleet = await Promise.all([0, 1, 2].map(() => instance(prefix, { hotKeysIntervalMs: 100, localEnabled: false }, redis.url)))
  try {
    await rerunOnce(fleet, prefix, redis, lose)
  } finally {
    // Closed with the test: a fleet left reconnecting could reach the next test's Redis on the same port.
    await Promise.all(fleet.map((m) => m.close()))
    for (const c of clients.slice(opened)) c.disconnect()
  }
}

async function rerunOnce (fleet: CacheManager[], prefix: string, redis: PrivateRedis, lose: (direct: Redis) => Promise<void>): Promise<void> {
  const keys = ['h0', 'h1', 'h2', 'h3', 'h4']
  const runs = new Map<string, number>()
  const loader = (key: string) => async () => {
    runs.set(key, (runs.get(key) ?? 0) + 1)
    return `value of ${key}`
  }
  for (const m of fleet) for (let r = 0; r < 5; r++) for (const key of keys) await m.getOrSet(key, loader(key))
  for (const m of fleet) await m.flushHotKeys()
  for (const m of fleet) for (const key of keys) await m.getOrSet(key, loader(key))
  runs.clear()

  const direct = await client(redis.url)
  await lose(direct)
  await eventually(async () => (await direct.exists(...keys.map((k) => prefix + k)).catch(() => 0)) === keys.length, 'every key is in Redis')
  // Several more intervals: no other instance runs them again.
  const ticks = fleet.map((m) => m.getStats().redis.roundTrips)
  await eventually(() => fleet.every((m, i) => m.getStats().redis.roundTrips >= (ticks[i] ?? 0) + 10), 'every instance made ten more round trips')
  assert.deepEqual(Object.fromEntries(runs), Object.fromEntries(keys.map((k) => [k, 1])))
  assert.deepEqual(fleet.map((m) => m.getStats().warming.reruns).sort(), [0, 0, keys.length])
  for (const key of keys) assert.equal(await fleet[0]?.get(key), `value of ${key}`)
}

test('a hot-key flush that reaches a Redis which lost its data before the epoch check saw the loss does not empty the hot set the re-run needs', async () => {
  const prefix = newPrefix()
  // No local tier: every read is a miss, counted exactly and remembering its loader.
  const m = await instance(prefix, { localEnabled: false })
  const direct = clients[clients.length - 1] as unknown as { chassisCacheEpoch: (...args: unknown[]) => Promise<unknown> }
  const keys = ['h0', 'h1', 'h2', 'h3', 'h4']
  const runs = new Map<string, number>()
  const loader = (key: string) => async () => {
    runs.set(key, (runs.get(key) ?? 0) + 1)
    return `value of ${key}`
  }
  for (let r = 0; r < 5; r++) for (const key of keys) await m.getOrSet(key, loader(key))
  await m.flushHotKeys()
  for (const key of keys) await m.getOrSet(key, loader(key))
  // Every count has reached Redis (as the interval's ticks do): the next flush has nothing of its own to add.
  await m.flushHotKeys()
  runs.clear()
  // Redis loses this prefix's data, as a restarted Redis without persistence loses all of it.
  const stored = await admin.keys(`${prefix}*`)
  if (stored.length > 0) await admin.unlink(...stored)
  // One tick whose epoch check fails (Redis was still away for it) while its flush reaches the emptied Redis.
  const check = direct.chassisCacheEpoch
  direct.chassisCacheEpoch = async () => { throw new Error('Connection is closed.') }
  await m.flushHotKeys()
  direct.chassisCacheEpoch = check
  // The next tick sees the loss; the only instance wins the re-run, which must still know the hot keys.
  await m.flushHotKeys()
  assert.deepEqual(Object.fromEntries(runs), Object.fromEntries(keys.map((k) => [k, 1])))
  assert.equal(m.getStats().warming.reruns, keys.length)
  assert.equal(await admin.exists(...keys.map((k) => prefix + k)), keys.length)
})

test('after a Redis flush the hottest loaders run once across three instances', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  await rerunOnceAfter(redis, async (direct) => { await direct.flushall() })
})

test('after a Redis outage that lost its data the hottest loaders run once across three instances', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  await rerunOnceAfter(redis, async () => {
    await redis.stop()
    await redis.start()
  })
})

/** Reads `key` through two instances for `ms`; returns where each read came from and when the loader ran. */
async function readAcrossExpiry (options: CacheOptions, ms: number): Promise<{ sources: string[], loads: number[], instances: CacheManager[] }> {
  const prefix = newPrefix()
  const shared = { ttl: 2, grace: 0, localTtl: 60, hotKeysIntervalMs: 50, ...options }
  const instances = [await instance(prefix, shared), await instance(prefix, shared)]
  const loads: number[] = []
  const started = Date.now()
  const loader = async (): Promise<string> => {
    loads.push(Date.now() - started)
    await sleep(50)
    return 'v'
  }
  const sources: string[] = []
  while (Date.now() - started < ms) {
    for (const m of instances) sources.push((await m.getOrSetWithSource('hot', loader)).source)
    await sleep(10)
  }
  return { sources, loads, instances }
}

test('a hot key read near its expiry is refreshed in the background and never misses', async () => {
  const { sources, loads, instances } = await readAcrossExpiry({ refreshAheadRatio: 0.5 }, 5000)
  assert.equal(sources[0], 'loader')
  assert.deepEqual(sources.slice(1).filter((s) => s !== 'local' && s !== 'redis'), [], 'no read after the first waited for the loader')
  const refreshes = instances.reduce((n, m) => n + m.getStats().warming.refreshes, 0)
  assert.ok(refreshes >= 2, `reloaded in the background across two expiries (${refreshes})`)
  // One reload per expiry across both instances: the entry lives 2 s and is reloaded in its last second.
  assert.ok(loads.length <= 1 + Math.ceil(5000 / 1000), `loader ran ${loads.length} times in 5 s`)
})

test('with CACHE_REFRESH_AHEAD_RATIO=0 nothing is reloaded in the background and a hot key misses at expiry', async () => {
  const { sources, instances } = await readAcrossExpiry(cacheOptionFromEnv('refreshAheadRatio', { CACHE_REFRESH_AHEAD_RATIO: '0' }), 3000)
  assert.ok(sources.slice(1).includes('loader'), 'a read after expiry waited for the loader')
  assert.equal(instances.reduce((n, m) => n + m.getStats().warming.refreshes, 0), 0)
})

test('a delete that lands while a hot key is refreshed in the background is not undone by the refresh', async () => {
  const prefix = newPrefix()
  const options = { ttl: 2, grace: 0, hotKeysIntervalMs: 50, refreshAheadRatio: 0.9 }
  const [a, b] = [await instance(prefix, options), await instance(prefix, options)]
  let release: () => void = () => {}
  let reloading = false
  const loader = async (): Promise<string> => {
    if (a.getStats().loader.calls > 1) {
      reloading = true
      await new Promise<void>((resolve) => { release = resolve })
      return 'old'
    }
    return 'old'
  }
  await a.getOrSet('k', loader)
  await a.flushHotKeys()
  await a.getOrSet('k', loader)
  // Within the refresh window from the start (0.9 of the TTL): the next read starts the background reload.
  await eventually(async () => {
    await a.getOrSet('k', loader)
    return reloading
  }, 'a read meets the reload')
  await b.del('k')
  release()
  await eventually(() => a.getStats().uncachedLoads >= 1 || a.getStats().warming.refreshes >= 1, 'the reload finished')
  await sleep(100)
  assert.equal(await b.get('k'), undefined, 'Redis keeps the tombstone')
  assert.equal(a.peek('k'), undefined, 'the refreshing instance did not keep the old value either')
})

/**
 * The invalidation link (the bus's subscriber connection) of a cache on a private Redis, cut and restored while the
 * cache's own connection stays up: a restarted Redis gives both connections back at moments of their own.
 */
function busLink (admin: Redis, m: CacheManager): { cut: () => Promise<void>, restore: () => Promise<void> } {
  // The bus's connection, and whether its SUBSCRIBE was refused; undefined while it reconnects.
  const bus = async (): Promise<{ id: string, refused: boolean } | undefined> => {
    const line = String(await admin.call('CLIENT', 'LIST')).split('\n').find((l) => l.includes(' name=chassis-cache-bus '))
    const id = line && /^id=(\d+) /.exec(line)?.[1]
    return id ? { id, refused: line.includes(' sub=0 ') && line.includes(' cmd=subscribe ') } : undefined
  }
  return {
    cut: async () => {
      // Its SUBSCRIBE is refused from now on: it reconnects, but the link stays down.
      await admin.call('ACL', 'SETUSER', 'default', '-subscribe')
      const flushes = m.getStats().local.flushes
      const connection = await bus()
      assert.ok(connection, 'the bus has its connection')
      await admin.call('CLIENT', 'KILL', 'ID', connection.id)
      await eventually(() => m.getStats().local.flushes > flushes, 'the link is down')
    },
    restore: async () => {
      await admin.call('ACL', 'SETUSER', 'default', '+subscribe')
      const flushes = m.getStats().local.flushes
      // A connection whose SUBSCRIBE was refused stays down until it reconnects; one still reconnecting subscribes
      // (and is not cut while its SUBSCRIBE is on its way).
      await eventually(async () => {
        if (m.getStats().local.flushes > flushes) return true
        const connection = await bus()
        if (connection?.refused === true) await admin.call('CLIENT', 'KILL', 'ID', connection.id).catch(() => {})
        return false
      }, 'the link is up')
    }
  }
}

/** One cache on a private Redis that read `keys` as hot ones (and so remembers their loaders); each load is counted. */
async function hotOnPrivateRedis (t: { after: (fn: () => Promise<void>) => void }, keys: string[], load: (key: string) => Promise<void> = async () => {}): Promise<{ m: CacheManager, admin: Redis, runs: Map<string, number>, prefix: string }> {
  const redis = await startPrivateRedis()
  const admin = await client(redis.url)
  const prefix = newPrefix()
  // No local tier: every read is a miss, counted exactly and remembering its loader; ticks only when the test asks.
  const m = await instance(prefix, { localEnabled: false }, redis.url)
  const connection = clients[clients.length - 1] as Redis
  // Closed with the test: a client left reconnecting could reach the next test's Redis on the same port.
  t.after(async () => {
    await m.close()
    for (const c of [admin, connection]) c.disconnect()
    await redis.destroy()
  })
  const runs = new Map<string, number>()
  const loader = (key: string) => async () => {
    runs.set(key, (runs.get(key) ?? 0) + 1)
    await load(key)
    return `value of ${key}`
  }
  for (let r = 0; r < 5; r++) for (const key of keys) await m.getOrSet(key, loader(key))
  await m.flushHotKeys()
  for (const key of keys) await m.getOrSet(key, loader(key))
  await m.flushHotKeys()
  runs.clear()
  return { m, admin, runs, prefix }
}

test('a Redis data loss seen while the invalidation link is still down is re-run once it is up, so the link\'s recovery cannot drop the re-run\'s writes', async (t) => {
  const keys = ['h0', 'h1', 'h2', 'h3', 'h4']
  const during: { load?: () => Promise<void> } = {}
  const { m, admin, runs, prefix } = await hotOnPrivateRedis(t, keys, async () => { await during.load?.() })
  const link = busLink(admin, m)
  await link.cut()
  await admin.flushall()
  // A restarted Redis: the cache's connection is back first, the link a moment later, while the re-run loads.
  let restored: Promise<void> | undefined
  const restore = async (): Promise<void> => { await (restored ??= link.restore()) }
  during.load = restore
  // A tick with the cache's connection up and the link down.
  await m.flushHotKeys()
  await restore()
  await eventually(async () => (await admin.exists(...keys.map((k) => prefix + k))) === keys.length, 'every key is in Redis')
  assert.deepEqual(Object.fromEntries(runs), Object.fromEntries(keys.map((k) => [k, 1])))
  assert.equal(m.getStats().warming.reruns, keys.length)
})

test('a hot-key flush due while a re-run is under way waits for it, so the keys the re-run has not reached keep their loaders', async (t) => {
  // More keys than the re-run loads at once: the last ones are started only after the first ones are written.
  const keys = ['h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7']
  const during: { load?: () => Promise<void> } = {}
  const { m, admin, runs, prefix } = await hotOnPrivateRedis(t, keys, async () => { await during.load?.() })
  const link = busLink(admin, m)
  await link.cut()
  await admin.flushall()
  // The interval's tick, while the re-run the link's recovery started is loading its first keys.
  let tick: Promise<void> | undefined
  during.load = async () => { await Promise.race([tick ??= m.flushHotKeys(), sleep(300)]) }
  await link.restore()
  await eventually(async () => (await admin.exists(...keys.map((k) => prefix + k))) === keys.length, 'every key is in Redis')
  await tick
  assert.deepEqual(Object.fromEntries(runs), Object.fromEntries(keys.map((k) => [k, 1])))
})
