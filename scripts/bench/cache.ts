import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { runInNewContext } from 'node:vm'
import v8 from 'node:v8'
import { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import pg from 'pg'
import { createCacheManager, type CacheManager } from '@lead-chassis/plugins/cache'
import { decodeCacheEntry as decode, encodeCacheEntry as encode } from '@lead-chassis/plugins/cache'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/platform/paths.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { createBentoCache } from './bentocache.js'
import { load, median, opsPerSecond, processCpuMs, startService, table, type LoadResult } from './lib.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    leads: { type: 'string', default: '10000' },
    // micro: the in-process and Redis rows only; http: the routes only.
    only: { type: 'string', default: '' }
  }
})
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_cache'
const duration = Number(args.duration)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const log = (m: string): void => console.log(`[bench:cache] ${m}`)

// The value of the comparison rows is a page of 20 leads as the api serves it: plain JSON (dates as ISO text), which
// bentocache, storing JSON text in Redis, gives back unchanged too. The same page with Date fields, which only our
// V8 codec gives back as Dates, has a row of its own.
const lead = (i: number, at: Date | string) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, firstName: 'Ann', lastName: 'Lee', email: `ann${i}@example.com`, phone: '(555) 010-2000', product: 'auto', state: 'CA', status: 'new', score: 50, source: 'web', createdAt: at, updatedAt: at })
const value = { data: Array.from({ length: 20 }, (_, i) => lead(i, new Date().toISOString())), nextCursor: null }
const withDates = { data: Array.from({ length: 20 }, (_, i) => lead(i, new Date())), nextCursor: null }

interface Measure {
  group: string
  name: string
  /** Operations `run` performs. */
  ops: number
  run: () => Promise<unknown>
  /** The bentocache row this one is compared with. */
  versus?: string
}

v8.setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

const loop = async (n: number, op: () => unknown): Promise<void> => {
  for (let i = 0; i < n; i++) op()
}
const awaited = async (n: number, op: () => Promise<unknown>): Promise<void> => {
  for (let i = 0; i < n; i++) await op()
}
const inFlight = async (n: number, concurrency: number, op: () => Promise<unknown>): Promise<unknown> => opsPerSecond(n, concurrency, op)

async function micro (): Promise<Array<Record<string, string | number>>> {
  const N = 1_000_000
  const M = 20_000
  const closers: Array<() => Promise<unknown>> = []
  const lru = new LRUCache<string, object>({ max: 10000 })
  lru.set('k', value)
  const lruTtl = new LRUCache<string, object>({ max: 10000, maxSize: 64 * 1024 * 1024, noDeleteOnStaleGet: true })
  lruTtl.set('k', value, { ttl: 60_000, size: 5000 })
  const rawAsync = async (k: string): Promise<object | undefined> => lru.get(k)
  const local = createCacheManager(undefined)
  await local.set('k', value)
  const loader = async () => value
  const prefix = `bench:${process.pid}:`
  const localBento = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix}bento-local` })
  closers.push(localBento.close)
  await localBento.bento.set({ key: 'k', value })

  // Redis hits: our cache over the client the redis plugin makes (auto-pipelining off, its default, and on), and
  // bentocache with Redis alone (no L1) over an ioredis client the same two ways. 64 reads in flight.
  const redis = new Redis(REDIS_URL)
  closers.push(async () => redis.quit())
  await redis.set(`${prefix}raw`, JSON.stringify(value))
  const ours = async (autoPipelining: boolean): Promise<CacheManager> => {
    const client = createRedisClient({ url: REDIS_URL, autoPipelining })
    const cache = createCacheManager(client, { prefix: `${prefix}${autoPipelining ? 'ap' : 'plain'}:`, localEnabled: false, redisTimeoutMs: 1000 })
    await cache.ready()
    await cache.set('k', value)
    await cache.set('dates', withDates)
    // The same page as the previous format stored it (kind 2, no expiry inside), as found during a rolling deploy.
    await redis.set(`${prefix}${autoPipelining ? 'ap' : 'plain'}:legacy`, encode({ v: value, g: 0 }), 'PX', 3_600_000)
    closers.push(async () => { await cache.deletePattern('*'); await cache.close(); await client.quit() })
    return cache
  }
  const remote = await ours(false)
  const remoteAp = await ours(true)
  const l2Bento = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix}bento-l2`, local: false })
  const l2BentoAp = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix}bento-l2`, local: false, autoPipelining: true })
  closers.push(async () => { await l2Bento.bento.clear(); await l2Bento.close(); await l2BentoAp.close() })
  await l2Bento.bento.set({ key: 'k', value })
  assert.deepEqual(await remote.get('k'), value)
  assert.deepEqual(await l2BentoAp.bento.get({ key: 'k' }), value)

  // Decoding alone, in this process: what a Redis hit pays after the round trip.
  const jsonEntry = encode({ v: value, g: 0 }, 60_000)
  const v8Entry = Buffer.concat([jsonEntry.subarray(0, 2), Buffer.alloc(16), v8.serialize({ v: value, g: 0 })])
  v8Entry[1] = 0x01
  // Both clients turn the reply's bytes into text before JSON.parse (ioredis does it for bentocache): both rows do.
  const bentoBytes = await redis.getBuffer(`${prefix}bento-l2:k`)
  assert.ok(bentoBytes, 'bentocache\'s Redis entry is where its key naming puts it')

  const measures: Measure[] = [
    { group: 'local', name: 'local hit: raw lru-cache get, max only (sync)', ops: N, run: () => loop(N, () => lru.get('k')) },
    { group: 'local', name: 'local hit: raw lru-cache get, TTL + byte bound like the local tier (sync)', ops: N, run: () => loop(N, () => lruTtl.get('k')) },
    { group: 'local', name: 'local hit: cache.peek (sync)', ops: N, run: () => loop(N, () => local.peek('k')) },
    { group: 'local', name: 'local hit: raw lru-cache get behind await', ops: N, run: () => awaited(N, () => rawAsync('k')) },
    { group: 'local', name: 'local hit: await cache.get', ops: N, run: () => awaited(N, () => local.get('k')), versus: 'bento-get' },
    { group: 'local', name: 'local hit: await cache.getOrSet', ops: N, run: () => awaited(N, () => local.getOrSet('k', loader)), versus: 'bento-getOrSet' },
    { group: 'local', name: 'bento-get', ops: N / 10, run: () => awaited(N / 10, () => localBento.bento.get({ key: 'k' })) },
    { group: 'local', name: 'bento-getOrSet', ops: N / 10, run: () => awaited(N / 10, () => localBento.bento.getOrSet({ key: 'k', factory: loader })) },
    { group: 'redis', name: 'Redis hit: raw ioredis GET, 64 in flight', ops: M, run: () => inFlight(M, 64, () => redis.get(`${prefix}raw`)) },
    { group: 'redis', name: 'Redis hit: raw GET + JSON.parse', ops: M, run: () => inFlight(M, 64, async () => JSON.parse(await redis.get(`${prefix}raw`) as string)) },
    { group: 'redis', name: 'Redis hit: cache.get, local tier off, auto-pipelining off (our default)', ops: M, run: () => inFlight(M, 64, () => remote.get('k')), versus: 'bento-redis' },
    { group: 'redis', name: 'Redis hit: cache.get, local tier off, auto-pipelining on', ops: M, run: () => inFlight(M, 64, () => remoteAp.get('k')), versus: 'bento-redis-ap' },
    { group: 'redis', name: 'Redis hit: cache.get, an entry of the previous format (GET, then PTTL + GET), auto-pipelining off', ops: M, run: () => inFlight(M, 64, () => remote.get('legacy')), versus: 'bento-redis' },
    { group: 'redis', name: 'Redis hit: cache.get, an entry of the previous format (GET, then PTTL + GET), auto-pipelining on', ops: M, run: () => inFlight(M, 64, () => remoteAp.get('legacy')), versus: 'bento-redis-ap' },
    { group: 'redis', name: 'Redis hit: cache.get, the same page with Date fields (V8 codec), auto-pipelining off', ops: M, run: () => inFlight(M, 64, () => remote.get('dates')) },
    { group: 'redis', name: 'bento-redis', ops: M, run: () => inFlight(M, 64, () => l2Bento.bento.get({ key: 'k' })) },
    { group: 'redis', name: 'bento-redis-ap', ops: M, run: () => inFlight(M, 64, () => l2BentoAp.bento.get({ key: 'k' })) },
    { group: 'decode', name: 'decode alone: our entry as JSON text (kind 3)', ops: M, run: () => loop(M, () => decode(jsonEntry)), versus: 'bento-decode' },
    { group: 'decode', name: 'decode alone: the same value as V8 structured clone (kind 1, no expiry inside)', ops: M, run: () => loop(M, () => decode(v8Entry)), versus: 'bento-decode' },
    { group: 'decode', name: 'bento-decode', ops: M, run: () => loop(M, () => JSON.parse(bentoBytes.toString())) }
  ]
  const bentoNames: Record<string, string> = {
    'bento-get': 'local hit: bentocache await get (L1 memory, serialize: false)',
    'bento-getOrSet': 'local hit: bentocache await getOrSet (L1 memory, serialize: false)',
    'bento-redis': 'Redis hit: bentocache get, Redis only (no L1), auto-pipelining off',
    'bento-redis-ap': 'Redis hit: bentocache get, Redis only (no L1), auto-pipelining on',
    'bento-decode': 'decode alone: bentocache\'s entry (UTF-8 bytes to text, JSON.parse)'
  }
  // Every round runs every measure once, every other round in reverse order, so that neither side of a comparison
  // always runs first (warmer JIT, a cooler machine) and a drift of the machine's speed reaches all of them. The
  // garbage one measure leaves is collected before the next starts, not during it.
  // Beside the time, this process's CPU per operation: the machine's other load moves it much less than the time.
  const samples = new Map<string, number[]>()
  const cpuSamples = new Map<string, number[]>()
  for (let round = 1; round <= rounds; round++) {
    for (const m of round % 2 === 1 ? measures : [...measures].reverse()) {
      collectGarbage()
      const cpu = process.cpuUsage()
      const started = performance.now()
      await m.run()
      const wallNs = (performance.now() - started) * 1e6 / m.ops
      const used = process.cpuUsage(cpu)
      samples.set(m.name, [...(samples.get(m.name) ?? []), wallNs])
      cpuSamples.set(m.name, [...(cpuSamples.get(m.name) ?? []), (used.user + used.system) * 1000 / m.ops])
    }
    log(`micro round ${round} of ${rounds} done`)
  }
  const med = (name: string): number => median(samples.get(name) ?? [Number.NaN])
  const rows: Array<Record<string, string | number>> = []
  const baseline: Record<string, number> = {}
  for (const m of measures) {
    const ns = med(m.name)
    baseline[m.group] ??= ns
    rows.push({
      measure: bentoNames[m.name] ?? m.name,
      'ns/op': ns.toFixed(0),
      ratio: (ns / (baseline[m.group] as number)).toFixed(2),
      'CPU ns/op (this process)': median(cpuSamples.get(m.name) ?? [Number.NaN]).toFixed(0),
      'ours vs bentocache (speed, > 1: ours faster)': m.versus ? (med(m.versus) / ns).toFixed(2) : '',
      'ours vs bentocache (CPU, > 1: ours cheaper)': m.versus ? (median(cpuSamples.get(m.versus) ?? [Number.NaN]) / median(cpuSamples.get(m.name) ?? [Number.NaN])).toFixed(2) : ''
    })
  }

  const keys = Array.from({ length: 100 }, (_, i) => `m:${i}`)
  await remote.mset(keys.map((k, i) => [k, lead(i, new Date().toISOString())] as [string, unknown]))
  await redis.mset(Object.fromEntries(keys.map((k, i) => [`${prefix}raw:${k}`, JSON.stringify(lead(i, new Date().toISOString()))])))
  const before = remote.getStats().redis.roundTrips
  const K = 5000
  const ourMget = await opsPerSecond(K, 16, () => remote.mget(keys))
  const tripsPerCall = (remote.getStats().redis.roundTrips - before) / K
  const rawMget = await opsPerSecond(K, 16, async () => (await redis.mget(keys.map((k) => `${prefix}raw:${k}`))).map((s) => JSON.parse(s as string) as unknown))
  rows.push({ measure: 'mget 100 keys: raw MGET + JSON.parse', 'ns/op': (1e9 / rawMget).toFixed(0), ratio: '1.00' })
  rows.push({ measure: `mget 100 keys: cache.mget (${tripsPerCall.toFixed(2)} round trips per call)`, 'ns/op': (1e9 / ourMget).toFixed(0), ratio: (rawMget / ourMget).toFixed(2) })
  await redis.del(`${prefix}raw`, ...keys.map((k) => `${prefix}raw:${k}`))
  for (const close of closers.reverse()) await close()
  return rows
}

async function http (): Promise<{ rows: Array<Record<string, string | number>>, ratios: { cachedOverUncached: number, cachedOverCeiling: number, oursOverBentocache: number, bentocacheCpuOverOurs: number, ceilingCpuOverOurs: number } }> {
  await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })
  const client = new pg.Client({ connectionString: DATABASE_URL, options: `-c search_path=${SCHEMA}` })
  await client.connect()
  const { rows: [count] } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  await client.end()
  if ((count?.n ?? 0) < Number(args.leads)) {
    log(`seeding ${Number(args.leads) - (count?.n ?? 0)} leads into schema ${SCHEMA}`)
    await seed({ databaseUrl: DATABASE_URL, schema: SCHEMA, count: Number(args.leads) - (count?.n ?? 0) })
  }
  // The client is a reader with an API key, as a real one would be; the key is verified on every request.
  const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: SCHEMA, min: 0, max: 1, healthCheckInterval: 0 })
  const { key } = await new ApiKeyStore(pool).mint('bench:cache', ['leads:read'])
  await pool.close()
  const headers = { 'x-api-key': key }
  const env = { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL, CACHE_PREFIX: `bench:${process.pid}:http:`, RATE_LIMIT_ENABLED: 'false' }
  const cached = await startService('dist/services/api/main.js', { ...env, CACHE_ENABLED: 'true' }, await freePort())
  const uncached = await startService('dist/services/api/main.js', { ...env, CACHE_ENABLED: 'false' }, await freePort())
  const bento = await startService('dist/scripts/bench/bentocache-server.js', { ...env, CACHE_PREFIX: `bench:${process.pid}:bento:` }, await freePort())
  const ceiling = await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${cached.url}/api/v1/leads`, BENCH_API_KEY: key }, await freePort())
  const configs = { 'cached route (ours)': cached, 'cached route (bentocache: L1 + Redis + its bus, same platform)': bento, 'uncached route (PostgreSQL every request)': uncached, 'ceiling (bare Fastify, bytes in memory)': ceiling }
  const [ourBody, bentoBody] = await Promise.all([cached, bento].map(async (s) => (await fetch(`${s.url}/api/v1/leads`, { headers })).text()))
  if (ourBody !== bentoBody) throw new Error('the bentocache route answers other bytes than ours; the comparison would be meaningless')
  const results: Record<string, LoadResult[]> = {}
  // The service process's CPU per request: on a busy machine throughput moves with the neighbours, this much less.
  const cpuPerRequest: Record<string, number[]> = {}
  try {
    for (let round = 1; round <= rounds; round++) {
      // Every other round in reverse order: no configuration always follows the same neighbour's load.
      const order = Object.entries(configs)
      for (const [name, service] of round % 2 === 1 ? order : order.reverse()) {
        await load(`${service.url}/api/v1/leads`, connections, 1, headers)
        const cpuBefore = processCpuMs(service)
        const r = await load(`${service.url}/api/v1/leads`, connections, duration, headers)
        const cpuAfter = processCpuMs(service)
        if (r.errors + r.non2xx > 0) throw new Error(`${name}: ${r.errors} errors and ${r.non2xx} non-2xx answers; the comparison would be meaningless`)
        ;(results[name] ??= []).push(r)
        if (cpuBefore !== undefined && cpuAfter !== undefined) (cpuPerRequest[name] ??= []).push((cpuAfter - cpuBefore) * 1000 / Math.max(1, r.requests))
        log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms, service CPU ${(cpuPerRequest[name]?.at(-1) ?? Number.NaN).toFixed(0)} µs/request`)
      }
    }
  } finally {
    await Promise.all(Object.values(configs).map((s) => s.stop()))
  }
  const med = (name: string, f: keyof LoadResult): number => median((results[name] ?? []).map((r) => r[f]))
  const rows = Object.keys(configs).map((name) => ({
    configuration: name,
    'req/s': med(name, 'rps').toFixed(0),
    'avg ms': med(name, 'avgMs').toFixed(2),
    'p50 ms': med(name, 'p50Ms').toFixed(0),
    'p99 ms': med(name, 'p99Ms').toFixed(0),
    'service CPU µs/request': median(cpuPerRequest[name] ?? [Number.NaN]).toFixed(0),
    errors: (results[name] ?? []).reduce((n, r) => n + r.errors + r.non2xx, 0)
  }))
  const ours = med('cached route (ours)', 'rps')
  const cpu = (name: string): number => median(cpuPerRequest[name] ?? [Number.NaN])
  return {
    rows,
    ratios: {
      cachedOverUncached: ours / med('uncached route (PostgreSQL every request)', 'rps'),
      cachedOverCeiling: ours / med('ceiling (bare Fastify, bytes in memory)', 'rps'),
      oursOverBentocache: ours / med('cached route (bentocache: L1 + Redis + its bus, same platform)', 'rps'),
      bentocacheCpuOverOurs: cpu('cached route (bentocache: L1 + Redis + its bus, same platform)') / cpu('cached route (ours)'),
      ceilingCpuOverOurs: cpu('ceiling (bare Fastify, bytes in memory)') / cpu('cached route (ours)')
    }
  }
}

const microRows = args.only === 'http' ? [] : await micro()
if (microRows.length > 0) console.log(`\n${table(microRows)}\n`)
if (args.only === 'micro') process.exit(0)
const web = await http()
console.log(`\nGET /api/v1/leads, autocannon ${connections} connections, ${duration} s x ${rounds} rounds interleaved, medians:\n`)
console.log(table(web.rows))
console.log(`\ncached / uncached = ${web.ratios.cachedOverUncached.toFixed(2)}x (target >= 5x)`)
console.log(`cached / ceiling  = ${(web.ratios.cachedOverCeiling * 100).toFixed(0)}% (target >= 90%)`)
console.log(`ours / bentocache = ${web.ratios.oursOverBentocache.toFixed(2)}x req/s (target >= 1); bentocache's CPU per request / ours = ${web.ratios.bentocacheCpuOverOurs.toFixed(2)}x`)
console.log(`ceiling's CPU per request / ours = ${(web.ratios.ceilingCpuOverOurs * 100).toFixed(0)}% (the share of our route's CPU a bare route needs)`)
mkdirSync(join(projectRoot, 'bench-results'), { recursive: true })
writeFileSync(join(projectRoot, 'bench-results', 'cache.json'), JSON.stringify({ when: new Date().toISOString(), args, micro: microRows, http: web }, null, 2))
