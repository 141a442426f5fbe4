import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import pg from 'pg'
import { createCacheManager } from '@lead-chassis/plugins/cache'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/domain/paths.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { load, median, opsPerSecond, startService, table, type LoadResult } from './lib.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    leads: { type: 'string', default: '10000' }
  }
})
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_cache'
const duration = Number(args.duration)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const log = (m: string): void => console.log(`[bench:cache] ${m}`)

const lead = (i: number) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, firstName: 'Ann', lastName: 'Lee', email: `ann${i}@example.com`, phone: '(555) 010-2000', product: 'auto', state: 'CA', status: 'new', score: 50, source: 'web', createdAt: new Date(), updatedAt: new Date() })
const value = { data: Array.from({ length: 20 }, (_, i) => lead(i)), nextCursor: null }

async function micro (): Promise<Array<Record<string, string | number>>> {
  const rows: Array<Record<string, string | number>> = []
  const N = 1_000_000
  const lru = new LRUCache<string, object>({ max: 10000 })
  lru.set('k', value)
  let t = performance.now()
  for (let i = 0; i < N; i++) lru.get('k')
  const rawSync = (performance.now() - t) * 1e6 / N
  const lruTtl = new LRUCache<string, object>({ max: 10000, maxSize: 64 * 1024 * 1024, noDeleteOnStaleGet: true })
  lruTtl.set('k', value, { ttl: 60_000, size: 5000 })
  t = performance.now()
  for (let i = 0; i < N; i++) lruTtl.get('k')
  const rawTtl = (performance.now() - t) * 1e6 / N
  const rawAsync = async (k: string): Promise<object | undefined> => lru.get(k)
  t = performance.now()
  for (let i = 0; i < N; i++) await rawAsync('k')
  const rawAwaited = (performance.now() - t) * 1e6 / N
  const local = createCacheManager(undefined)
  await local.set('k', value)
  t = performance.now()
  for (let i = 0; i < N; i++) local.peek('k')
  const ourPeek = (performance.now() - t) * 1e6 / N
  t = performance.now()
  for (let i = 0; i < N; i++) await local.get('k')
  const ourGet = (performance.now() - t) * 1e6 / N
  t = performance.now()
  const loader = async () => value
  for (let i = 0; i < N; i++) await local.getOrSet('k', loader)
  const ourGetOrSet = (performance.now() - t) * 1e6 / N
  rows.push({ measure: 'local hit: raw lru-cache get, max only (sync)', 'ns/op': rawSync.toFixed(0), ratio: '1.00' })
  rows.push({ measure: 'local hit: raw lru-cache get, TTL + byte bound like the local tier (sync)', 'ns/op': rawTtl.toFixed(0), ratio: (rawTtl / rawSync).toFixed(2) })
  rows.push({ measure: 'local hit: cache.peek (sync)', 'ns/op': ourPeek.toFixed(0), ratio: (ourPeek / rawSync).toFixed(2) })
  rows.push({ measure: 'local hit: raw lru-cache get behind await', 'ns/op': rawAwaited.toFixed(0), ratio: (rawAwaited / rawSync).toFixed(2) })
  rows.push({ measure: 'local hit: await cache.get', 'ns/op': ourGet.toFixed(0), ratio: (ourGet / rawSync).toFixed(2) })
  rows.push({ measure: 'local hit: await cache.getOrSet', 'ns/op': ourGetOrSet.toFixed(0), ratio: (ourGetOrSet / rawSync).toFixed(2) })

  const redis = new Redis(REDIS_URL, { enableAutoPipelining: true })
  const prefix = `bench:${process.pid}:`
  const remote = createCacheManager(redis, { prefix, localEnabled: false, redisTimeoutMs: 1000 })
  await remote.ready()
  await remote.set('k', value)
  await redis.set(`${prefix}raw`, JSON.stringify(value))
  const M = 50_000
  const rawGet = await opsPerSecond(M, 64, () => redis.get(`${prefix}raw`))
  const rawGetParse = await opsPerSecond(M, 64, async () => JSON.parse(await redis.get(`${prefix}raw`) as string))
  const ourRedis = await opsPerSecond(M, 64, () => remote.get('k'))
  rows.push({ measure: 'Redis hit: raw ioredis GET, 64 in flight', 'ns/op': (1e9 / rawGet).toFixed(0), ratio: '1.00' })
  rows.push({ measure: 'Redis hit: raw GET + JSON.parse', 'ns/op': (1e9 / rawGetParse).toFixed(0), ratio: (rawGet / rawGetParse).toFixed(2) })
  rows.push({ measure: 'Redis hit: cache.get (local tier off)', 'ns/op': (1e9 / ourRedis).toFixed(0), ratio: (rawGet / ourRedis).toFixed(2) })

  const keys = Array.from({ length: 100 }, (_, i) => `m:${i}`)
  await remote.mset(keys.map((k, i) => [k, lead(i)] as [string, unknown]))
  await redis.mset(Object.fromEntries(keys.map((k, i) => [`${prefix}raw:${k}`, JSON.stringify(lead(i))])))
  const before = remote.getStats().redis.roundTrips
  const K = 5000
  const ourMget = await opsPerSecond(K, 16, () => remote.mget(keys))
  const tripsPerCall = (remote.getStats().redis.roundTrips - before) / K
  const rawMget = await opsPerSecond(K, 16, async () => (await redis.mget(keys.map((k) => `${prefix}raw:${k}`))).map((s) => JSON.parse(s as string) as unknown))
  rows.push({ measure: 'mget 100 keys: raw MGET + JSON.parse', 'ns/op': (1e9 / rawMget).toFixed(0), ratio: '1.00' })
  rows.push({ measure: `mget 100 keys: cache.mget (${tripsPerCall.toFixed(2)} round trips per call)`, 'ns/op': (1e9 / ourMget).toFixed(0), ratio: (rawMget / ourMget).toFixed(2) })
  await remote.deletePattern('*')
  await remote.close()
  await redis.del(`${prefix}raw`, ...keys.map((k) => `${prefix}raw:${k}`))
  await redis.quit()
  return rows
}

async function http (): Promise<{ rows: Array<Record<string, string | number>>, ratios: { cachedOverUncached: number, cachedOverCeiling: number } }> {
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
  const ceiling = await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${cached.url}/api/v1/leads`, BENCH_API_KEY: key }, await freePort())
  const configs = { 'cached route (ours)': cached, 'uncached route (PostgreSQL every request)': uncached, 'ceiling (bare Fastify, bytes in memory)': ceiling }
  const results: Record<string, LoadResult[]> = {}
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const [name, service] of Object.entries(configs)) {
        await load(`${service.url}/api/v1/leads`, connections, 1, headers)
        const r = await load(`${service.url}/api/v1/leads`, connections, duration, headers)
        if (r.errors + r.non2xx > 0) throw new Error(`${name}: ${r.errors} errors and ${r.non2xx} non-2xx answers; the comparison would be meaningless`)
        ;(results[name] ??= []).push(r)
        log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms`)
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
    errors: (results[name] ?? []).reduce((n, r) => n + r.errors + r.non2xx, 0)
  }))
  const ours = med('cached route (ours)', 'rps')
  return {
    rows,
    ratios: { cachedOverUncached: ours / med('uncached route (PostgreSQL every request)', 'rps'), cachedOverCeiling: ours / med('ceiling (bare Fastify, bytes in memory)', 'rps') }
  }
}

const microRows = await micro()
console.log(`\n${table(microRows)}\n`)
const web = await http()
console.log(`\nGET /api/v1/leads, autocannon ${connections} connections, ${duration} s x ${rounds} rounds interleaved, medians:\n`)
console.log(table(web.rows))
console.log(`\ncached / uncached = ${web.ratios.cachedOverUncached.toFixed(2)}x (target >= 5x)`)
console.log(`cached / ceiling  = ${(web.ratios.cachedOverCeiling * 100).toFixed(0)}% (target >= 80%)`)
mkdirSync(join(projectRoot, 'bench-results'), { recursive: true })
writeFileSync(join(projectRoot, 'bench-results', 'cache.json'), JSON.stringify({ when: new Date().toISOString(), args, micro: microRows, http: web }, null, 2))
