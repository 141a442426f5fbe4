import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { createCacheManager, type CacheManager, type CacheSource } from './cache-manager.js'
import type { CacheOptions } from './options.js'
import { uniqueName } from '../../test/helpers/database.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { cacheOptionFromEnv } from '../../test/helpers/cache-options.js'
import { createRedisClient } from '../redis/index.js'

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

async function fleet (n: number, options: CacheOptions): Promise<CacheManager[]> {
  const prefix = `${uniqueName('ahead')}:`
  prefixes.push(prefix)
  return Promise.all(Array.from({ length: n }, async () => {
    const c = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000 })
    await new Promise((resolve) => c.once('ready', resolve))
    clients.push(c)
    const m = createCacheManager(c, { prefix, grace: 0, redisTimeoutMs: 1000, hotKeysIntervalMs: 100, ...options })
    managers.push(m)
    assert.ok(await m.ready(5000))
    return m
  }))
}

/** How sendCached reads: the local tier through `peek` (which carries no loader), then getOrSetWithSource. */
async function read (m: CacheManager, key: string, loader: () => Promise<unknown>): Promise<CacheSource> {
  if (m.peek(key) !== undefined) return 'local'
  return (await m.getOrSetWithSource(key, loader)).source
}

/** Loaders that record when they ran, per key. */
function loaders (): { calls: Map<string, number[]>, loader: (key: string, ms?: number) => () => Promise<string> } {
  const calls = new Map<string, number[]>()
  return {
    calls,
    loader: (key, ms = 20) => async () => {
      calls.set(key, [...(calls.get(key) ?? []), Date.now()])
      await sleep(ms)
      return `${key}@${Date.now()}`
    }
  }
}

/**
 * Three instances read three keys in turn, each key once every `spacingMs` across the fleet (so each instance reads
 * a key every 3 x `spacingMs`, and a read mostly falls outside the key's refresh window), for `ms`. Every key is
 * loaded and made hot first; the misses counted are the reads after that which waited for a loader.
 */
async function readAcrossExpiries (options: CacheOptions, ms: number, spacingMs: number): Promise<{ misses: number[], calls: Map<string, number[]>, instances: CacheManager[] }> {
  const instances = await fleet(3, { ttl: 2, ...options })
  const keys = ['h0', 'h1', 'h2']
  const { calls, loader } = loaders()
  for (const m of instances) for (const key of keys) await read(m, key, loader(key))
  for (const m of instances) await m.flushHotKeys()
  calls.clear()
  const misses = instances.map(() => 0)
  const started = Date.now()
  for (let round = 0; Date.now() - started < ms; round++) {
    for (const [k, key] of keys.entries()) {
      const i = (round + k) % instances.length
      if (await read(instances[i] as CacheManager, key, loader(key)) === 'loader') misses[i] = (misses[i] ?? 0) + 1
    }
    await sleep(spacingMs)
  }
  return { misses, calls, instances }
}

test('a hot key read less often than its refresh window never misses on any of three instances across three expiries', async () => {
  // TTL 2 s, window 0.5 s, each key read every 1.1 s: refreshing only on a read inside the window misses about
  // half of the expiries; the sweep reloads every hot key read within its TTL.
  const { misses, instances } = await readAcrossExpiries({ refreshAheadRatio: 0.25 }, 6500, 1100)
  assert.deepEqual(misses, [0, 0, 0], 'no read waited for a loader, on any instance')
  const refreshes = instances.reduce((n, m) => n + m.getStats().warming.refreshes, 0)
  assert.ok(refreshes >= 6, `three keys reloaded in the background across three expiries (${refreshes})`)
})

test('with refresh-ahead off the same reads miss at expiry', async () => {
  const { misses } = await readAcrossExpiries({ refreshAheadRatio: 0 }, 4500, 1100)
  assert.ok(misses.reduce((a, b) => a + b, 0) >= 3, `reads waited for the loader after expiry (${misses.join(', ')})`)
})

test('each refresh runs the loader once across three instances, not once per instance', async () => {
  const { calls } = await readAcrossExpiries({ refreshAheadRatio: 0.25 }, 5000, 300)
  for (const [key, times] of calls) {
    assert.ok(times.length >= 2, `${key} was reloaded (${times.length})`)
    // Reloads of one key are a fresh period apart (TTL minus the window, 1.5 s); two instances reloading the same
    // expiry would be milliseconds apart.
    for (let i = 1; i < times.length; i++) assert.ok((times[i] as number) - (times[i - 1] as number) >= 1000, `${key} loaded ${(times[i] as number) - (times[i - 1] as number)} ms after its previous load`)
  }
})

test('a loader that fails during a refresh leaves the current value served until it expires, then within its grace, then the error', async () => {
  const [a, b] = await fleet(2, { ttl: 3, grace: 2, refreshAheadRatio: 0.5 }) as [CacheManager, CacheManager]
  let failing = false
  let calls = 0
  const loader = async (): Promise<string> => {
    calls++
    if (failing) throw new Error('backend down')
    return 'v1'
  }
  await a.getOrSet('k', loader)
  const loadedAt = Date.now()
  await b.getOrSet('k', loader)
  await a.flushHotKeys()
  await b.flushHotKeys()
  failing = true
  calls = 0
  while (Date.now() - loadedAt < 2700) {
    for (const m of [a, b]) {
      const { value, source } = await m.getOrSetWithSource('k', loader)
      assert.equal(value, 'v1')
      assert.ok(source === 'local' || source === 'redis', `served ${source} before expiry`)
    }
    await sleep(100)
  }
  assert.ok(calls >= 1, 'the refresh was tried in the background')
  assert.ok(a.getStats().loader.errors + b.getStats().loader.errors >= 1)
  await sleep(Math.max(0, loadedAt + 3300 - Date.now()))
  while (Date.now() - loadedAt < 4600) {
    for (const m of [a, b]) assert.deepEqual(await m.getOrSetWithSource('k', loader), { value: 'v1', source: 'stale' })
    await sleep(100)
  }
  await sleep(Math.max(0, loadedAt + 5400 - Date.now()))
  for (const m of [a, b]) await assert.rejects(m.getOrSet('k', loader), /backend down/)
})

test('a key outside the CACHE_REFRESH_AHEAD_MAX_KEYS hottest is not reloaded in the background', async () => {
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.5, ...cacheOptionFromEnv('refreshAheadMaxKeys', { CACHE_REFRESH_AHEAD_MAX_KEYS: '1' }) }) as [CacheManager]
  const { calls, loader } = loaders()
  for (let i = 0; i < 200; i++) await read(m, 'hot', loader('hot'))
  await read(m, 'cold', loader('cold'))
  await m.flushHotKeys()
  const sources = new Map<string, CacheSource[]>([['hot', []], ['cold', []]])
  const started = Date.now()
  while (Date.now() - started < 5000) {
    for (const key of ['hot', 'cold']) sources.get(key)?.push(await read(m, key, loader(key)))
    await sleep(200)
  }
  const foreground = (key: string): number => (sources.get(key) ?? []).filter((s) => s === 'loader').length
  assert.equal(foreground('hot'), 0, 'the hot key never missed')
  assert.ok((calls.get('hot')?.length ?? 0) >= 3, 'the hot key was reloaded in the background')
  assert.ok(foreground('cold') >= 2, 'the cold key missed at its expiries')
  assert.equal(calls.get('cold')?.length, 1 + foreground('cold'), 'the cold key\'s loader ran only for its misses')
})

test('a hot key nobody reads any more is reloaded at most once more', async () => {
  const [m] = await fleet(1, { ttl: 1, refreshAheadRatio: 0.5 }) as [CacheManager]
  const { calls, loader } = loaders()
  for (let i = 0; i < 50; i++) await read(m, 'k', loader('k'))
  await m.flushHotKeys()
  await read(m, 'k', loader('k'))
  await sleep(4000)
  assert.ok((calls.get('k')?.length ?? 0) <= 2, `loaded ${calls.get('k')?.length} times`)
})

test('CACHE_REFRESH_AHEAD_CONCURRENCY bounds the background reloads running at once on an instance', async () => {
  async function maxRunning (concurrency: number): Promise<{ max: number, misses: number }> {
    // Four keys due together, a 1.5 s window: four 100 ms reloads one after the other fit in it.
    const [m] = await fleet(1, { ttl: 3, refreshAheadRatio: 0.5, ...cacheOptionFromEnv('refreshAheadConcurrency', { CACHE_REFRESH_AHEAD_CONCURRENCY: String(concurrency) }) }) as [CacheManager]
    let running = 0
    let max = 0
    let misses = 0
    const loader = (key: string) => async () => {
      max = Math.max(max, ++running)
      await sleep(100)
      running--
      return key
    }
    const keys = ['a', 'b', 'c', 'd']
    await Promise.all(keys.map(async (key) => m.getOrSet(key, loader(key))))
    await m.flushHotKeys()
    max = 0
    const started = Date.now()
    while (Date.now() - started < 3200) {
      for (const key of keys) if (await read(m, key, loader(key)) === 'loader') misses++
      await sleep(100)
    }
    return { max, misses }
  }
  const one = await maxRunning(1)
  assert.equal(one.max, 1, `one background reload at a time (${JSON.stringify(one)})`)
  assert.equal(one.misses, 0)
  const four = await maxRunning(4)
  assert.ok(four.max >= 2, `reloads ran side by side (${four.max})`)
})

test('a loader that hangs during a refresh neither holds the key past its expiry nor keeps its reload slot', async () => {
  // TTL 2 s, window 1 s: the lock (and the reload's deadline) lasts 1 s, so the hung reload gives up at about the
  // entry's expiry; one reload at a time, so a slot held for good would stop every later refresh.
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.5, refreshAheadConcurrency: 1 }) as [CacheManager]
  let hang = false
  let hung = 0
  const loader = async (): Promise<string> => {
    if (hang) {
      hang = false
      hung++
      return new Promise<string>(() => {})
    }
    return `v@${Date.now()}`
  }
  await m.getOrSet('k', loader)
  await m.flushHotKeys()
  hang = true
  const started = Date.now()
  let slowest = 0
  while (Date.now() - started < 6000) {
    const t0 = Date.now()
    const answered = await Promise.race([m.getOrSetWithSource('k', loader).then(() => true), sleep(3000).then(() => false)])
    assert.ok(answered, `a read of the key answered (after ${Date.now() - started} ms)`)
    slowest = Math.max(slowest, Date.now() - t0)
    await sleep(100)
  }
  assert.equal(hung, 1, 'the background reload hung')
  assert.ok(slowest < 1500, `every read answered within the reload's deadline (slowest ${slowest} ms)`)
  assert.ok(m.getStats().warming.refreshes >= 3, `the key was refreshed in the background again (${m.getStats().warming.refreshes})`)
})

test('close waits for the background reloads running and stops the sweep', async () => {
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.5 }) as [CacheManager]
  let slow = false
  let running = 0
  let finished = 0
  let calls = 0
  const loader = async (): Promise<string> => {
    calls++
    if (!slow) return 'v'
    running++
    await sleep(400)
    running--
    finished++
    return 'v'
  }
  await m.getOrSet('k', loader)
  await m.flushHotKeys()
  slow = true
  const started = Date.now()
  while (running === 0 && Date.now() - started < 3000) {
    await m.getOrSetWithSource('k', loader)
    await sleep(20)
  }
  assert.equal(running, 1, 'a background reload is running')
  await m.close()
  assert.equal(running, 0, 'close resolved after the reload finished')
  assert.equal(finished, 1)
  const after = calls
  await sleep(2500)
  assert.equal(calls, after, 'nothing reloaded after close')
})

test('with Redis hung while hot keys come due, reads answer within the command budget and refreshes resume', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 100 })
  t.after(() => client.disconnect())
  const m = createCacheManager(client, { prefix: 'hung:', ttl: 2, grace: 0, redisTimeoutMs: 100, breakerCooldownMs: 300, hotKeysIntervalMs: 100, refreshAheadRatio: 0.5, refreshAheadConcurrency: 2 })
  t.after(() => m.close())
  assert.ok(await m.ready(5000))
  const keys = Array.from({ length: 20 }, (_, i) => `k${i}`)
  const loader = (key: string) => async () => `${key}@${Date.now()}`
  for (const key of keys) await m.getOrSet(key, loader(key))
  await m.flushHotKeys()
  let slowest = 0
  const readAll = async (): Promise<void> => {
    for (const key of keys) {
      const t0 = performance.now()
      await m.getOrSetWithSource(key, loader(key))
      slowest = Math.max(slowest, performance.now() - t0)
    }
  }
  await sleep(900)
  redis.pause()
  const started = Date.now()
  try {
    while (Date.now() - started < 3000) {
      await readAll()
      await sleep(50)
    }
  } finally {
    redis.resume()
  }
  assert.ok(slowest < 600, `every read answered within the command budget (slowest ${Math.round(slowest)} ms)`)
  const refreshed = m.getStats().warming.refreshes
  const resumed = Date.now()
  while (m.getStats().warming.refreshes === refreshed && Date.now() - resumed < 5000) {
    await readAll()
    await sleep(50)
  }
  assert.ok(m.getStats().warming.refreshes > refreshed, 'background refreshes resumed once Redis answered again')
})

const LOADER_MS = 1000
test('a read that finds no local copy while its key is refreshed in the background is served from Redis, not held for the loader', async () => {
  // The local tier off (or a local TTL shorter than the entry's) sends every read to Redis; one that arrives while
  // the background reload runs must get the current Redis copy, not wait for the reload's 1 s loader. A read held
  // for the loader takes up to its second; the 600 ms bound leaves a busy machine (a CI run's other files) room.
  for (const options of [{ localEnabled: false }, { localTtl: 1 }]) {
    const [m] = await fleet(1, { ttl: 3, refreshAheadRatio: 0.5, ...options }) as [CacheManager]
    const loader = async (): Promise<string> => {
      await sleep(LOADER_MS)
      return `v@${Date.now()}`
    }
    await m.getOrSet('k', loader)
    await m.flushHotKeys()
    const sources = new Map<CacheSource, number>()
    let slowest = 0
    const started = Date.now()
    while (Date.now() - started < 4000) {
      const t0 = performance.now()
      const { source } = await m.getOrSetWithSource('k', loader)
      slowest = Math.max(slowest, performance.now() - t0)
      sources.set(source, (sources.get(source) ?? 0) + 1)
      await sleep(20)
    }
    const stats = m.getStats()
    // What a failure needs to be read: the hot set, Redis's state and errors, the loader's calls, the reads' sources.
    const seen = JSON.stringify({ options, warming: stats.warming, redis: { ...stats.redis, latency: undefined }, loader: stats.loader.calls, sources: [...sources], slowest: Math.round(slowest) })
    assert.ok(stats.warming.refreshes >= 1, `the key was refreshed in the background (${seen})`)
    assert.equal(sources.get('loader') ?? 0, 0, `no read waited for the loader (${JSON.stringify(options)}: ${JSON.stringify([...sources])})`)
    assert.ok(slowest < 600, `every read answered without waiting for the reload (${JSON.stringify(options)}: slowest ${Math.round(slowest)} ms)`)
  }
})

test('a hot key read back to back with no local copy is refreshed before it expires: a read in flight when the refresh takes its lock does not make it give up', async () => {
  // Every read is a Redis read in flight until the next starts, so the refresh always finds one once it holds the
  // lock. Giving up there (and keeping the lock until it lapsed) left the entry to expire and a read to wait for
  // the loader.
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.5, localEnabled: false }) as [CacheManager]
  let loads = 0
  const loader = async (): Promise<string> => {
    loads++
    await sleep(50)
    return `v${loads}`
  }
  await m.getOrSet('k', loader)
  await m.flushHotKeys()
  const sources = new Map<CacheSource, number>()
  const started = Date.now()
  // Past the entry's 2 s TTL: without a refresh, a read finds it expired.
  while (Date.now() - started < 3500) {
    const { source } = await m.getOrSetWithSource('k', loader)
    sources.set(source, (sources.get(source) ?? 0) + 1)
  }
  const stats = m.getStats()
  assert.ok(stats.warming.refreshes >= 1, `the key was refreshed in the background (${JSON.stringify({ warming: stats.warming, sources: [...sources] })})`)
  assert.equal(sources.get('loader') ?? 0, 0, `no read waited for the loader: ${JSON.stringify([...sources])}`)
})

test('a miss running the loader of a due key does not hold a reload slot: another hot key due meanwhile is still refreshed before it expires', async () => {
  // One reload slot; 2 s entries due in their last 500 ms, whose reload lock lives 1 s. Key s, the hotter, leaves
  // Redis (an eviction) just before it comes due, and its next read runs a slow loader. A reload of s that waited on
  // that miss held the only slot for the lock's second, and h, due with it, expired unrefreshed: its next read
  // waited for its loader.
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.25, localEnabled: false, refreshAheadConcurrency: 1 }) as [CacheManager]
  const prefix = prefixes[prefixes.length - 1] as string
  let slow = false
  const sLoader = async (): Promise<string> => {
    if (slow) await sleep(3000)
    return 's'
  }
  const hLoader = async (): Promise<string> => `h@${Date.now()}`
  await m.getOrSet('s', sLoader)
  await m.getOrSet('h', hLoader)
  const filled = Date.now()
  for (let i = 0; i < 20; i++) await m.getOrSet('s', sLoader)
  // A Redis hit of h, which schedules its reload (its fill, with the local tier off, schedules none).
  await m.getOrSet('h', hLoader)
  await m.flushHotKeys()
  await sleep(1300 - (Date.now() - filled))
  slow = true
  await admin.del(`${prefix}s`)
  const miss = m.getOrSet('s', sLoader)
  // Past h's expiry, within the second a waiting reload of s would hold the slot.
  await sleep(2300 - (Date.now() - filled))
  const { source } = await m.getOrSetWithSource('h', hLoader)
  assert.equal(source, 'redis', `h was refreshed before it expired (${JSON.stringify(m.getStats().warming)})`)
  await miss
})

test('a process whose cache was closed while a background reload\'s loader hangs exits once its clients are closed, not when the reload\'s deadline lapses', async () => {
  // A 70 s entry due at once: its reload's deadline (the lock's lifetime) is 60 s. The deadline's timer kept the
  // process alive that long after close, past any orchestrator's grace period.
  const prefix = `${uniqueName('ahead-exit')}:`
  prefixes.push(prefix)
  const script = `
    import { Redis } from 'ioredis'
    import { createCacheManager } from ${JSON.stringify(new URL('./cache-manager.js', import.meta.url).href)}
    const client = new Redis(${JSON.stringify(REDIS_URL)}, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    await new Promise((resolve) => client.once('ready', resolve))
    const m = createCacheManager(client, { prefix: ${JSON.stringify(prefix)}, ttl: 70, grace: 0, refreshAheadRatio: 0.99, hotKeysIntervalMs: 100 })
    await m.ready(5000)
    let hang = false
    const loader = async () => (hang ? new Promise(() => {}) : 'v')
    await m.getOrSet('k', loader)
    await m.flushHotKeys()
    hang = true
    const started = Date.now()
    while (m.getStats().warming.refreshes === 0 && Date.now() - started < 5000) {
      await m.getOrSet('k', loader)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await m.close()
    await client.quit()
    console.log(m.getStats().warming.refreshes >= 1 ? 'closed with a reload hung' : 'no reload started')
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const exited = once(child, 'exit')
  const closed = await Promise.race([
    (async () => { while (!out.includes('\n')) await sleep(20); return performance.now() })(),
    exited.then(() => performance.now())
  ])
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  await exited
  clearTimeout(timer)
  const lingered = performance.now() - closed
  assert.equal(out.trim(), 'closed with a reload hung')
  assert.ok(lingered < 3000, `the process exited ${Math.round(lingered)} ms after its cache and client closed`)
})

test('close does not wait past its bound for a background reload that hangs, so a shutdown fits its grace period', async () => {
  const [m] = await fleet(1, { ttl: 2, refreshAheadRatio: 0.5 }) as [CacheManager]
  let hang = false
  let running = 0
  const loader = async (): Promise<string> => {
    if (!hang) return 'v'
    running++
    return await new Promise<string>(() => {})
  }
  await m.getOrSet('k', loader)
  await m.flushHotKeys()
  hang = true
  const started = Date.now()
  while (running === 0 && Date.now() - started < 3000) {
    await m.getOrSetWithSource('k', loader)
    await sleep(20)
  }
  assert.equal(running, 1, 'a background reload hangs')
  const closing = Date.now()
  await m.close()
  const waited = Date.now() - closing
  assert.ok(waited < 4000, `close took ${waited} ms with a hung reload (bound 2 s)`)
})
