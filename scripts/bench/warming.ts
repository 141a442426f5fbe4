import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpus } from 'node:os'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { startService, table, type Service } from './lib.js'
import { buildWorkload, replay } from './workload.js'

// `npm run bench:warming`: (1) hit rate and p99 of the first seconds after one api instance restarts under the
// `npm run bench` request mix, cache warming on vs off, interleaved; (2) misses of hot keys across their expiry,
// refresh-ahead on vs off. Rate limiting is off so that only the cache differs.
const { values: args } = parseArgs({
  options: {
    window: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
    background: { type: 'string', default: '10' },
    leads: { type: 'string', default: '20000' },
    ttl: { type: 'string', default: '4' },
    'expiry-duration': { type: 'string', default: '20' },
    'hot-keys': { type: 'string', default: '20' },
    // On a busy shared machine the default 100 ms budget expires on event-loop lag, and every breaker opening
    // flushes the local tier, warmed or not: a longer budget keeps the comparison about warming.
    'redis-timeout': { type: 'string', default: '1000' }
  }
})
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_warming'
const log = (m: string): void => console.log(`[bench:warming] ${m}`)
const started = performance.now()

await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })
const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: SCHEMA, min: 0, max: 2, healthCheckInterval: 0 })
const { rows: [count] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
if ((count?.n ?? 0) < Number(args.leads)) {
  log(`seeding ${Number(args.leads) - (count?.n ?? 0)} leads into ${SCHEMA}`)
  await seed({ databaseUrl: DATABASE_URL, schema: SCHEMA, count: Number(args.leads) - (count?.n ?? 0) })
  await pool.query('ANALYZE leads')
}
await pool.query("DELETE FROM api_keys WHERE name = 'bench-warming'")
const store = new ApiKeyStore(pool)
const keys = await Promise.all(Array.from({ length: 50 }, async () => (await store.mint('bench-warming', ['leads:read', 'leads:write'])).key))
const adminKey = (await store.mint('bench-warming', ['admin'])).key
const { rows: idRows } = await pool.query<{ id: string }>('SELECT id FROM leads ORDER BY md5(id::text) LIMIT 5000')
await pool.close()
const workload = buildWorkload({ ids: idRows.map((r) => r.id), size: 200000, writes: 0.02 })

const tag = `benchwarm${process.pid}`
// The load generator is one address standing for many callers: the per-address key-lookup budget is off.
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL, LOG_LEVEL: 'warn', DB_POOL_MAX: '10', RATE_LIMIT_ENABLED: 'false', API_KEY_LOOKUP_LIMIT: '0', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', REDIS_COMMAND_TIMEOUT_MS: args['redis-timeout'] ?? '1000' }
const children: Service[] = []
// A failed run must not leave api instances behind.
process.on('exit', () => { for (const c of children) c.child.kill() })

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

type Run = Promise<{ latencies: Array<[number, number]>, non2xx: number, errors: number }> & { stop: () => void }

/** Replays the workload against `url` for `seconds` (or until stopped); latencies with the second they came in. */
function run (url: string, seconds: number, connections: number, offset: number): Run {
  const latencies: Array<[number, number]> = []
  const t0 = performance.now()
  const load = replay(url, { seconds, connections, sequence: workload, offset, callers: keys, onResponse: (time) => { latencies.push([(performance.now() - t0) / 1000, time]) } })
  const result = load.done.then((r) => ({ latencies, non2xx: r.non2xx, errors: r.errors + r.timeouts }))
  return Object.assign(result, { stop: load.stop })
}

async function cacheCounters (url: string): Promise<Record<string, number>> {
  const totals: Record<string, number> = {}
  const text = await (await fetch(`${url}/metrics`)).text()
  for (const m of text.matchAll(/^cache_operations\{tier="(\w+)",outcome="(\w+)"[^}]*\} (\d+)/gm)) totals[`${m[1]}_${m[2]}`] = (totals[`${m[1]}_${m[2]}`] ?? 0) + Number(m[3])
  return totals
}

// --- (1) Warming: a fleet of two; one instance stays up under background load, the other restarts. ---
const window = Number(args.window)
const fleet = { ...base, CACHE_PREFIX: `${tag}:w:` }
const steady = await startService('dist/services/api/main.js', fleet, await freePort())
children.push(steady)
const port = await freePort()
let restarting = await startService('dist/services/api/main.js', fleet, port)
children.push(restarting)
log('filling Redis and the hot-key set: 20 s of load on both instances')
await Promise.all([run(steady.url, 20, Number(args.background), 0), run(restarting.url, 20, Number(args.background), 100000)])
const background = run(steady.url, 3600, Number(args.background), 0)
interface Restart { warming: string, readyMs: number, warmed: number, flushes: number, redisErrors: number, requests: number, localHitRate: number, localHitRateFirst5s: number, hitRate: number, p99: number, p99First5s: number, errors: number }
const restarts: Restart[] = []
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const warming of round % 2 === 1 ? ['on', 'off'] : ['off', 'on']) {
    await restarting.stop()
    const t0 = performance.now()
    restarting = await startService('dist/services/api/main.js', { ...fleet, CACHE_WARM_ENABLED: warming === 'on' ? 'true' : 'false' }, port)
    children[1] = restarting
    const readyMs = Math.round(performance.now() - t0)
    const url = restarting.url
    const [r, early] = await Promise.all([run(url, window, Number(args.connections), 50000 * round), sleep(5000).then(() => cacheCounters(url))])
    const c = await cacheCounters(url)
    const stats = await (await fetch(`${url}/api/v1/admin/cache`, { headers: { 'x-api-key': adminKey } })).json() as { warming?: { warmed: number }, local?: { flushes: number } }
    const all = r.latencies.map(([, ms]) => ms).sort((a, b) => a - b)
    const first = r.latencies.filter(([s]) => s < 5).map(([, ms]) => ms).sort((a, b) => a - b)
    const lookups = (c.local_hit ?? 0) + (c.local_miss ?? 0)
    const rate = (x: number, total: number): number => Math.round((x / Math.max(1, total)) * 1000) / 10
    restarts.push({
      warming,
      readyMs,
      warmed: stats.warming?.warmed ?? 0,
      flushes: stats.local?.flushes ?? 0,
      redisErrors: c.redis_error ?? 0,
      requests: all.length,
      localHitRate: rate(c.local_hit ?? 0, lookups),
      localHitRateFirst5s: rate(early.local_hit ?? 0, (early.local_hit ?? 0) + (early.local_miss ?? 0)),
      hitRate: rate((c.local_hit ?? 0) + (c.redis_hit ?? 0), (c.local_hit ?? 0) + (c.redis_hit ?? 0) + (c.redis_miss ?? 0)),
      p99: Math.round(percentile(all, 0.99)),
      p99First5s: Math.round(percentile(first, 0.99)),
      errors: r.errors + r.non2xx
    })
    log(`round ${round} warming ${warming}: ${JSON.stringify(restarts.at(-1))}`)
  }
}
background.stop()
await background.catch(() => undefined)
for (const c of children.splice(0)) await c.stop()

// --- (2) Refresh-ahead: the hottest paths read through two instances across several expiries. ---
const paths = [...workload.reduce((m, r) => (r.method === 'GET' ? m.set(r.path, (m.get(r.path) ?? 0) + 1) : m), new Map<string, number>())]
  .sort((a, b) => b[1] - a[1]).slice(0, Number(args['hot-keys'])).map(([p]) => p)
async function expiry (ratio: string, round: number): Promise<{ ratio: string, reads: number, misses: number }> {
  const env = { ...base, CACHE_PREFIX: `${tag}:e${ratio}r${round}:`, CACHE_TTL: args.ttl ?? '4', CACHE_GRACE: '0', CACHE_REFRESH_AHEAD_RATIO: ratio, CACHE_HOT_KEYS_INTERVAL_MS: '500' }
  const pair = [await startService('dist/services/api/main.js', env, await freePort()), await startService('dist/services/api/main.js', env, await freePort())]
  children.push(...pair)
  const read = async (i: number): Promise<string> => {
    const res = await fetch(`${pair[Math.floor(i / paths.length) % 2]?.url}${paths[i % paths.length]}`, { headers: { 'x-api-key': keys[i % keys.length] ?? '' } })
    await res.arrayBuffer()
    return res.headers.get('x-cache') ?? 'none'
  }
  // Every path loaded once and read until the fleet knows it is hot; misses are counted after that.
  for (let i = 0; i < paths.length * 2; i++) await read(i)
  const until = performance.now() + 3000
  for (let i = 0; performance.now() < until; i++) await read(i)
  let reads = 0
  let misses = 0
  const end = performance.now() + Number(args['expiry-duration']) * 1000
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    for (let i = worker; performance.now() < end; i += 8) {
      reads++
      if ((await read(i)) === 'MISS') misses++
    }
  }))
  for (const s of pair) await s.stop()
  children.splice(0)
  return { ratio, reads, misses }
}
const expiries: Array<{ ratio: string, reads: number, misses: number }> = []
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const ratio of round % 2 === 1 ? ['0.25', '0'] : ['0', '0.25']) {
    expiries.push(await expiry(ratio, round))
    log(`round ${round} refresh-ahead ratio ${ratio}: ${JSON.stringify(expiries.at(-1))}`)
  }
}

// --- Report. ---
const avg = (rows: Restart[], f: keyof Restart): number => Math.round(rows.reduce((s, r) => s + (r[f] as number), 0) / Math.max(1, rows.length) * 10) / 10
const on = restarts.filter((r) => r.warming === 'on')
const off = restarts.filter((r) => r.warming === 'off')
const missesOn = expiries.filter((e) => e.ratio !== '0').reduce((s, e) => s + e.misses, 0)
const missesOff = expiries.filter((e) => e.ratio === '0').reduce((s, e) => s + e.misses, 0)
const command = `npm run bench:warming -- --window ${args.window} --rounds ${args.rounds} --connections ${args.connections} --ttl ${args.ttl} --expiry-duration ${args['expiry-duration']} --redis-timeout ${args['redis-timeout']}`
console.log([
  '',
  `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; load generator on the same machine. Command: \`${command}\``,
  '',
  `First ${window} s after restarting one of two api instances under the \`npm run bench\` mix (${args.connections} connections on it, ${args.background} on the other):`,
  '',
  table(restarts.map((r) => ({ warming: r.warming, 'start to ready ms': r.readyMs, 'entries warmed': r.warmed, 'local tier flushes': r.flushes, 'Redis errors': r.redisErrors, requests: r.requests, 'local hit %': r.localHitRate, 'local hit % first 5 s': r.localHitRateFirst5s, 'hit % (local + Redis)': r.hitRate, 'p99 ms': r.p99, 'p99 first 5 s ms': r.p99First5s, errors: r.errors }))),
  '',
  `warming on / off (means): local hit rate ${avg(on, 'localHitRate')}% / ${avg(off, 'localHitRate')}% (first 5 s: ${avg(on, 'localHitRateFirst5s')}% / ${avg(off, 'localHitRateFirst5s')}%), hit rate ${avg(on, 'hitRate')}% / ${avg(off, 'hitRate')}%, p99 ${avg(on, 'p99')} / ${avg(off, 'p99')} ms (ratio ${Math.round(avg(on, 'p99') / Math.max(0.1, avg(off, 'p99')) * 100) / 100}), p99 of the first 5 s ${avg(on, 'p99First5s')} / ${avg(off, 'p99First5s')} ms`,
  '',
  `The ${paths.length} hottest GET paths read through two instances for ${args['expiry-duration']} s with CACHE_TTL=${args.ttl} (8 readers):`,
  '',
  table(expiries.map((e) => ({ 'refresh-ahead ratio': e.ratio, reads: e.reads, 'MISS answers': e.misses }))),
  '',
  `hot-key misses across expiry, refresh-ahead on / off: ${missesOn} / ${missesOff}${missesOn > 0 ? ` (ratio ${Math.round(missesOff / missesOn * 10) / 10}x)` : ''}`,
  `in ${((performance.now() - started) / 1000).toFixed(0)} s`
].join('\n'))
process.exit(0)
