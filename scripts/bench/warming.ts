import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpus } from 'node:os'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { freePort } from '../../test/helpers/ports.js'
import { seededSchema } from './seeded-schema.js'
import { startService, table, type Service } from './lib.js'
import { buildWorkload, replay } from './workload.js'

// `npm run bench:warming`: (1) hit rate and p99 of the first seconds after one api instance restarts under the
// `npm run bench` request mix, cache warming on vs off, interleaved; (2) misses of hot keys across their expiry,
// refresh-ahead on vs off, with the loader calls each cost. Rate limiting is off so that only the cache differs.
// `--part warming` or `--part refresh-ahead` runs one of the two.
const { values: args } = parseArgs({
  options: {
    window: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '1' },
    part: { type: 'string', default: 'all' },
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

const pool = await seededSchema(DATABASE_URL, SCHEMA, Number(args.leads), log)
await pool.query("DELETE FROM api_keys WHERE name = 'bench-warming'")
const store = new ApiKeyStore(pool)
const keys = await Promise.all(Array.from({ length: 50 }, async () => (await store.mint('bench-warming', ['leads:read', 'leads:write'])).key))
const adminKey = (await store.mint('bench-warming', ['admin'])).key
const { rows: idRows } = await pool.query<{ id: string }>('SELECT id FROM leads ORDER BY md5(id::text) LIMIT 5000')
await pool.close()
const workload = buildWorkload({ ids: idRows.map((r) => r.id), size: 200000, writes: 0.02 })

const tag = `benchwarm${process.pid}`
// Each connection is a caller of its own address (workload.ts, replay): the per-address key-lookup budget stays on.
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL, LOG_LEVEL: 'warn', DB_POOL_MAX: '10', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', REDIS_COMMAND_TIMEOUT_MS: args['redis-timeout'] ?? '1000' }
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
const runWarming = args.part !== 'refresh-ahead'
const runRefresh = args.part !== 'warming'
const fleet = { ...base, CACHE_PREFIX: `${tag}:w:` }
interface Restart { warming: string, readyMs: number, warmed: number, flushes: number, redisErrors: number, requests: number, localHitRate: number, localHitRateFirst5s: number, hitRate: number, p99: number, p99First5s: number, errors: number }
const restarts: Restart[] = []
if (runWarming) {
  const steady = await startService('dist/services/api/main.js', fleet, await freePort())
  children.push(steady)
  const port = await freePort()
  let restarting = await startService('dist/services/api/main.js', fleet, port)
  children.push(restarting)
  log('filling Redis and the hot-key set: 20 s of load on both instances')
  await Promise.all([run(steady.url, 20, Number(args.background), 0), run(restarting.url, 20, Number(args.background), 100000)])
  const background = run(steady.url, 3600, Number(args.background), 0)
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
}

// --- (2) Refresh-ahead: the hottest paths read through two instances across several expiries. ---
const paths = [...workload.reduce((m, r) => (r.method === 'GET' ? m.set(r.path, (m.get(r.path) ?? 0) + 1) : m), new Map<string, number>())]
  .sort((a, b) => b[1] - a[1]).slice(0, Number(args['hot-keys'])).map(([p]) => p)
interface Expiry { ratio: string, reads: number, misses: [number, number], redisHits: number, stale: number, loaderCalls: number, refreshes: number }
async function cacheStats (url: string): Promise<{ loader: { calls: number }, warming: { refreshes: number } }> {
  return await (await fetch(`${url}/api/v1/admin/cache`, { headers: { 'x-api-key': adminKey } })).json() as { loader: { calls: number }, warming: { refreshes: number } }
}
async function expiry (ratio: string, round: number): Promise<Expiry> {
  // API keys stay cached for the whole run, so the loader calls counted are the hot paths' own.
  const env = { ...base, CACHE_PREFIX: `${tag}:e${ratio}r${round}:`, CACHE_TTL: args.ttl ?? '4', CACHE_GRACE: '0', CACHE_REFRESH_AHEAD_RATIO: ratio, CACHE_HOT_KEYS_INTERVAL_MS: '500', API_KEY_CACHE_TTL: '3600' }
  const pair = [await startService('dist/services/api/main.js', env, await freePort()), await startService('dist/services/api/main.js', env, await freePort())]
  children.push(...pair)
  const read = async (i: number): Promise<[number, string]> => {
    const instance = Math.floor(i / paths.length) % 2
    const res = await fetch(`${pair[instance]?.url}${paths[i % paths.length]}`, { headers: { 'x-api-key': keys[i % keys.length] ?? '' } })
    await res.arrayBuffer()
    return [instance, res.headers.get('x-cache') ?? 'none']
  }
  // Every path loaded once, by one instance, and read on both until the fleet knows it is hot (the hot-key set is
  // learnt every 500 ms). The measured reads start before the first expiry: every expiry of a hot key is counted.
  for (let i = 0; i < paths.length * 2; i++) await read(i)
  const until = performance.now() + 3000
  for (let i = 0; performance.now() < until; i++) await read(i)
  const before = await Promise.all(pair.map((s) => cacheStats(s.url)))
  const out: Expiry = { ratio, reads: 0, misses: [0, 0], redisHits: 0, stale: 0, loaderCalls: 0, refreshes: 0 }
  const end = performance.now() + Number(args['expiry-duration']) * 1000
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    for (let i = worker; performance.now() < end; i += 8) {
      out.reads++
      const [instance, answer] = await read(i)
      if (answer === 'MISS') out.misses[instance as 0 | 1]++
      else if (answer === 'HIT-REDIS') out.redisHits++
      else if (answer === 'STALE') out.stale++
    }
  }))
  const afterStats = await Promise.all(pair.map((s) => cacheStats(s.url)))
  out.loaderCalls = afterStats.reduce((n, s, i) => n + s.loader.calls - (before[i]?.loader.calls ?? 0), 0)
  out.refreshes = afterStats.reduce((n, s, i) => n + s.warming.refreshes - (before[i]?.warming.refreshes ?? 0), 0)
  for (const s of pair) await s.stop()
  children.splice(0)
  return out
}
const expiries: Expiry[] = []
if (runRefresh) {
  for (let round = 1; round <= Number(args.rounds); round++) {
    for (const ratio of round % 2 === 1 ? ['0.25', '0'] : ['0', '0.25']) {
      expiries.push(await expiry(ratio, round))
      log(`round ${round} refresh-ahead ratio ${ratio}: ${JSON.stringify(expiries.at(-1))}`)
    }
  }
}

// --- Report. ---
const avg = (rows: Restart[], f: keyof Restart): number => Math.round(rows.reduce((s, r) => s + (r[f] as number), 0) / Math.max(1, rows.length) * 10) / 10
const on = restarts.filter((r) => r.warming === 'on')
const off = restarts.filter((r) => r.warming === 'off')
const sum = (rows: Expiry[], f: (e: Expiry) => number): number => rows.reduce((n, e) => n + f(e), 0)
const aheadOn = expiries.filter((e) => e.ratio !== '0')
const aheadOff = expiries.filter((e) => e.ratio === '0')
const misses = (e: Expiry): number => e.misses[0] + e.misses[1]
const ttl = Number(args.ttl)
const duration = Number(args['expiry-duration'])
// One reload per hot path per fresh period (TTL minus the window) across the fleet.
const singleFlight = Math.round(paths.length * duration / (ttl * (1 - 0.25)))
const mean = (rows: Expiry[], f: (e: Expiry) => number): number => Math.round(sum(rows, f) / Math.max(1, rows.length))
const command = `npm run bench:warming -- --part ${args.part} --window ${args.window} --rounds ${args.rounds} --connections ${args.connections} --ttl ${args.ttl} --expiry-duration ${args['expiry-duration']} --hot-keys ${args['hot-keys']} --redis-timeout ${args['redis-timeout']}`
const report = [
  '',
  `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; load generator on the same machine. Command: \`${command}\``
]
if (runWarming) {
  report.push(
    '',
    `First ${window} s after restarting one of two api instances under the \`npm run bench\` mix (${args.connections} connections on it, ${args.background} on the other):`,
    '',
    table(restarts.map((r) => ({ warming: r.warming, 'start to ready ms': r.readyMs, 'entries warmed': r.warmed, 'local tier flushes': r.flushes, 'Redis errors': r.redisErrors, requests: r.requests, 'local hit %': r.localHitRate, 'local hit % first 5 s': r.localHitRateFirst5s, 'hit % (local + Redis)': r.hitRate, 'p99 ms': r.p99, 'p99 first 5 s ms': r.p99First5s, errors: r.errors }))),
    '',
    `warming on / off (means): local hit rate ${avg(on, 'localHitRate')}% / ${avg(off, 'localHitRate')}% (first 5 s: ${avg(on, 'localHitRateFirst5s')}% / ${avg(off, 'localHitRateFirst5s')}%), hit rate ${avg(on, 'hitRate')}% / ${avg(off, 'hitRate')}%, p99 ${avg(on, 'p99')} / ${avg(off, 'p99')} ms (ratio ${Math.round(avg(on, 'p99') / Math.max(0.1, avg(off, 'p99')) * 100) / 100}), p99 of the first 5 s ${avg(on, 'p99First5s')} / ${avg(off, 'p99First5s')} ms`
  )
}
if (runRefresh) {
  report.push(
    '',
    `The ${paths.length} hottest GET paths read through two instances for ${duration} s with CACHE_TTL=${ttl} (8 readers; about ${Math.floor(duration / ttl)} expiries of each path, the first one included):`,
    '',
    table(expiries.map((e) => ({ 'refresh-ahead ratio': e.ratio, reads: e.reads, 'MISS on instance 1': e.misses[0], 'MISS on instance 2': e.misses[1], 'HIT-REDIS': e.redisHits, STALE: e.stale, 'loader calls (fleet)': e.loaderCalls, 'background reloads (fleet)': e.refreshes }))),
    '',
    `hot-key misses (x-cache: MISS) across expiry, refresh-ahead on / off: ${sum(aheadOn, misses)} / ${sum(aheadOff, misses)} over ${aheadOn.length} / ${aheadOff.length} runs (target with it on: 0)`,
    `loader calls a run (both instances), refresh-ahead on / off: ${mean(aheadOn, (e) => e.loaderCalls)} / ${mean(aheadOff, (e) => e.loaderCalls)}; one reload of each path per fresh period (TTL minus the window, ${ttl * 0.75} s) across the fleet would be ${singleFlight}`
  )
}
report.push(`in ${((performance.now() - started) / 1000).toFixed(0)} s`)
console.log(report.join('\n'))
process.exit(0)
