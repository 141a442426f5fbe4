import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/platform/paths.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { bentoNames, rows } from './cache-rows.js'
import { load, median, pinning, processCpuMs, startService, table, type LoadResult, type Service } from './lib.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '2' },
    connections: { type: 'string', default: '100' },
    // Even: every other round runs in reverse, and both orders weigh the same in the median.
    rounds: { type: 'string', default: '10' },
    // The routes' servers on the last CPU, the bench (its load generator) on the others. Off by default: on two CPUs
    // the one left to the load generator bounded the ceiling's throughput (its server 0.79 cores busy, ours 0.96),
    // which flattered our route against it.
    pin: { type: 'boolean', default: false },
    // Seconds each route is loaded, uncounted, before the first round: V8 has compiled every server's hot path first.
    warmup: { type: 'string', default: '10' },
    // Rounds of the micro rows, each row in a new process per round; even, so that both orders weigh the same.
    'micro-rounds': { type: 'string', default: '8' },
    leads: { type: 'string', default: '10000' },
    // micro: the in-process and Redis rows only; http: the routes only.
    only: { type: 'string', default: '' },
    // With --only micro: the rows of one group (local, redis, decode, mget).
    group: { type: 'string', default: '' }
  },
  allowNegative: true
})
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_cache'
const duration = Number(args.duration)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const microRounds = Number(args['micro-rounds'])
// A row under 90% of the raw read and parse of the same value is reported as not credible.
const FLOOR_TOLERANCE = 0.9
const log = (m: string): void => console.log(`[bench:cache] ${m}`)
// Read before the bench pins itself: the CPUs it may use then shrink.
const pinned = args.pin ? pinning() : undefined
const serverCpu = pinned?.servers

interface RowResult { ns: number, cpuNs: number, mainCpuNs: number, youngGcs: number, fullGcs: number, note: string }

/** One micro row measured in a new process of its own, which measures nothing else. */
function measureInChild (name: string): Promise<RowResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL('./cache-row.js', import.meta.url)), name], {
      env: { ...process.env, REDIS_URL },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as RowResult)
      else reject(new Error(`the micro row ${JSON.stringify(name)} exited with ${code}`))
    })
  })
}

const spread = (values: number[]): string => `${Math.min(...values).toFixed(0)}..${Math.max(...values).toFixed(0)}`

async function micro (): Promise<Array<Record<string, string | number>>> {
  // Every row runs in a new process of its own in every round: in one shared process a row inherited the heap its
  // predecessors grew, the JIT's feedback from their closures, their garbage and their open connections, and its
  // figure depended on where it stood in the list. Rounds interleave the rows, every other round in reverse order,
  // and an even number of rounds gives each order the same weight in the median.
  // Beside the time, the row's process's CPU per operation, which the machine's other load moves much less than the
  // time, and its main thread's share (the rest is mostly V8's garbage collector on helper threads).
  const measured = args.group === '' ? rows : rows.filter((r) => r.group === args.group)
  const samples = new Map<string, RowResult[]>()
  for (let round = 1; round <= microRounds; round++) {
    for (const row of round % 2 === 1 ? measured : [...measured].reverse()) {
      samples.set(row.name, [...(samples.get(row.name) ?? []), await measureInChild(row.name)])
    }
    log(`micro round ${round} of ${microRounds} done`)
  }
  const ns = (name: string): number[] => (samples.get(name) ?? []).map((s) => s.ns)
  const cpuNs = (name: string): number[] => (samples.get(name) ?? []).map((s) => s.cpuNs)
  const mainCpuNs = (name: string): number[] => (samples.get(name) ?? []).map((s) => s.mainCpuNs)
  const gcs = (name: string, kind: 'youngGcs' | 'fullGcs'): number[] => (samples.get(name) ?? []).map((s) => s[kind])
  // A comparison is the median of the rounds' own ratios: both rows of a round ran seconds apart, so a drift of the
  // machine's speed over the run moves both.
  const paired = (of: (name: string) => number[], numerator: string, denominator: string): number => {
    const below = of(denominator)
    return median(of(numerator).map((n, i) => n / (below[i] as number)))
  }
  const rowsOut: Array<Record<string, string | number>> = []
  const baseline: Record<string, number> = {}
  for (const row of measured) {
    const time = median(ns(row.name))
    baseline[row.group] ??= time
    const cpu = median(cpuNs(row.name))
    if (row.floor !== undefined) {
      const floor = { time: median(ns(row.floor)), cpu: median(cpuNs(row.floor)) }
      const under = [time < floor.time * FLOOR_TOLERANCE ? `${time.toFixed(0)} ns/op against ${floor.time.toFixed(0)}` : '', cpu < floor.cpu * FLOOR_TOLERANCE ? `${cpu.toFixed(0)} CPU ns/op against ${floor.cpu.toFixed(0)}` : ''].filter(Boolean)
      if (under.length > 0) console.warn(`[bench:cache] warning: "${bentoNames[row.name] ?? row.name}" came in under the raw GET + JSON.parse of the same value (${under.join('; ')}): a cache's read does that and more, so these figures measured something else (the machine's load, most likely)`)
    }
    rowsOut.push({
      measure: `${bentoNames[row.name] ?? row.name}${samples.get(row.name)?.at(-1)?.note ? ` ${samples.get(row.name)?.at(-1)?.note}` : ''}`,
      'ns/op': time.toFixed(0),
      'rounds min..max': spread(ns(row.name)),
      ratio: (time / (baseline[row.group] as number)).toFixed(2),
      'CPU ns/op (its process)': cpu.toFixed(0),
      'of which main thread': median(mainCpuNs(row.name)).toFixed(0),
      // Per 10,000 operations, medians of the rounds: a row of 1,000,000 and one of 20,000 read alike.
      'GCs per 10k ops, young / full': `${(median(gcs(row.name, 'youngGcs')) * 10_000 / row.ops).toFixed(1)} / ${(median(gcs(row.name, 'fullGcs')) * 10_000 / row.ops).toFixed(1)}`,
      'ours vs bentocache (speed, > 1: ours faster)': row.versus ? paired(ns, row.versus, row.name).toFixed(2) : '',
      'ours vs bentocache (CPU, > 1: ours cheaper)': row.versus ? paired(cpuNs, row.versus, row.name).toFixed(2) : ''
    })
  }
  return rowsOut
}

const OURS = 'cached route (ours)'
const BENTO = 'cached route (bentocache: L1 + Redis + its bus, same platform)'
const UNCACHED = 'uncached route (PostgreSQL every request)'
const CEILING = 'ceiling (bare Fastify, bytes in memory)'

async function http (): Promise<{ rows: Array<Record<string, string | number>>, rounds: { cachedOverCeiling: number[], oursOverBentocache: number[], cachedOverUncached: number[] }, ratios: { cachedOverUncached: number, cachedOverCeiling: number, oursOverBentocache: number, bentocacheCpuOverOurs: number, ceilingCpuOverOurs: number } }> {
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
  // Pinned (--pin), the servers share the last CPU, each loaded alone, and the load generator has the others.
  // PostgreSQL and Redis stay unpinned: the cached routes do not reach them.
  if (pinned !== undefined) {
    execFileSync('taskset', ['-a', '-p', '-c', pinned.bench, String(process.pid)], { stdio: 'ignore' })
    log(`pinned: the servers on CPU ${pinned.servers}, the load generator on CPU ${pinned.bench}`)
  }
  const cached = await startService('dist/services/api/main.js', { ...env, CACHE_ENABLED: 'true' }, await freePort(), [], serverCpu)
  const uncached = await startService('dist/services/api/main.js', { ...env, CACHE_ENABLED: 'false' }, await freePort(), [], serverCpu)
  const bento = await startService('dist/scripts/bench/bentocache-server.js', { ...env, CACHE_PREFIX: `bench:${process.pid}:bento:` }, await freePort(), [], serverCpu)
  const ceiling = await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${cached.url}/api/v1/leads`, BENCH_API_KEY: key }, await freePort(), [], serverCpu)
  const configs: Record<string, Service> = { [OURS]: cached, [BENTO]: bento, [UNCACHED]: uncached, [CEILING]: ceiling }
  // Run with our route between the two it is compared with most closely, so each ratio's sides run back to back:
  // the machine's speed drifts over minutes (docs/benchmarks.md). The table keeps the order above.
  const runOrder = [OURS, CEILING, BENTO, UNCACHED].map((name): [string, Service] => [name, configs[name] as Service])
  const [ourBody, bentoBody] = await Promise.all([cached, bento].map(async (s) => (await fetch(`${s.url}/api/v1/leads`, { headers })).text()))
  if (ourBody !== bentoBody) throw new Error('the bentocache route answers other bytes than ours; the comparison would be meaningless')
  const results: Record<string, LoadResult[]> = {}
  // The service process's CPU per request: on a busy machine throughput moves with the neighbours, this much less.
  const cpuPerRequest: Record<string, number[]> = {}
  try {
    // A round measures a server after V8 has compiled its hot path: our route runs more code than the bare one (its
    // hooks), and a 1 s load leaves it compiling (under callgrind, with V8 on one thread, it takes about 12,000
    // requests to settle: `npm run bench:api-instructions -- --warmup`).
    for (const [name, service] of runOrder) {
      const w = await load(`${service.url}/api/v1/leads`, connections, Number(args.warmup), headers)
      log(`warm-up ${name}: ${w.rps.toFixed(0)} req/s`)
    }
    for (let round = 1; round <= rounds; round++) {
      // Every other round in reverse order: no configuration always follows the same neighbour's load.
      for (const [name, service] of round % 2 === 1 ? runOrder : [...runOrder].reverse()) {
        await load(`${service.url}/api/v1/leads`, connections, 1, headers)
        const cpuBefore = processCpuMs(service)
        const r = await load(`${service.url}/api/v1/leads`, connections, duration, headers)
        const cpuAfter = processCpuMs(service)
        if (r.errors + r.non2xx > 0) throw new Error(`${name}: ${r.errors} errors and ${r.non2xx} non-2xx answers; the comparison would be meaningless`)
        ;(results[name] ??= []).push(r)
        if (cpuBefore !== undefined && cpuAfter !== undefined) (cpuPerRequest[name] ??= []).push((cpuAfter - cpuBefore) * 1000 / Math.max(1, r.requests))
        // Near 1, the server's CPU bounded its throughput; below, the load generator or the machine did.
        const busy = (cpuPerRequest[name]?.at(-1) ?? Number.NaN) * r.rps / 1e6
        log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms, service CPU ${(cpuPerRequest[name]?.at(-1) ?? Number.NaN).toFixed(0)} µs/request, service cores busy ${busy.toFixed(2)}`)
      }
    }
  } finally {
    await Promise.all(Object.values(configs).map((s) => s.stop()))
  }
  const med = (name: string, f: Exclude<keyof LoadResult, 'statuses'>): number => median((results[name] ?? []).map((r) => r[f]))
  const rows = Object.keys(configs).map((name) => ({
    configuration: name,
    'req/s': med(name, 'rps').toFixed(0),
    'avg ms': med(name, 'avgMs').toFixed(2),
    'p50 ms': med(name, 'p50Ms').toFixed(0),
    'p99 ms': med(name, 'p99Ms').toFixed(0),
    'service CPU µs/request': median(cpuPerRequest[name] ?? [Number.NaN]).toFixed(0),
    errors: (results[name] ?? []).reduce((n, r) => n + r.errors + r.non2xx, 0)
  }))
  const cpu = (name: string): number => median(cpuPerRequest[name] ?? [Number.NaN])
  // Each ratio of req/s is the median of the rounds' own ratios, as npm run bench gives them: both sides of one round
  // ran back to back, while the medians of two rows can come from rounds minutes apart.
  const perRound = (a: string, b: string): number[] => (results[a] ?? []).map((r, i) => r.rps / (results[b]?.[i]?.rps ?? Number.NaN))
  return {
    rows,
    rounds: { cachedOverCeiling: perRound(OURS, CEILING), oursOverBentocache: perRound(OURS, BENTO), cachedOverUncached: perRound(OURS, UNCACHED) },
    ratios: {
      cachedOverUncached: median(perRound(OURS, UNCACHED)),
      cachedOverCeiling: median(perRound(OURS, CEILING)),
      oursOverBentocache: median(perRound(OURS, BENTO)),
      bentocacheCpuOverOurs: cpu(BENTO) / cpu(OURS),
      ceilingCpuOverOurs: cpu(CEILING) / cpu(OURS)
    }
  }
}

const microRows = args.only === 'http' ? [] : await micro()
if (microRows.length > 0) console.log(`\n${table(microRows)}\n`)
if (args.only === 'micro') process.exit(0)
const web = await http()
console.log(`\nGET /api/v1/leads, autocannon ${connections} connections, ${args.warmup} s of warm-up each, then ${duration} s x ${rounds} rounds interleaved${serverCpu !== undefined ? `, the servers alone on CPU ${serverCpu}` : ''}, medians:\n`)
console.log(table(web.rows))
const each = (values: number[], f: (x: number) => string): string => ` (rounds ${values.map(f).join(', ')})`
const times = (x: number): string => `${x.toFixed(2)}x`
const percent = (x: number): string => `${(x * 100).toFixed(0)}%`
console.log(`\ncached / uncached = ${times(web.ratios.cachedOverUncached)} (target >= 5x)${each(web.rounds.cachedOverUncached, times)}`)
console.log(`cached / ceiling  = ${percent(web.ratios.cachedOverCeiling)} (target >= 90%)${each(web.rounds.cachedOverCeiling, percent)}`)
console.log(`ours / bentocache = ${times(web.ratios.oursOverBentocache)} req/s (target >= 1)${each(web.rounds.oursOverBentocache, times)}; bentocache's CPU per request / ours = ${web.ratios.bentocacheCpuOverOurs.toFixed(2)}x`)
console.log(`ceiling's CPU per request / ours = ${(web.ratios.ceilingCpuOverOurs * 100).toFixed(0)}% (the share of our route's CPU a bare route needs)`)
mkdirSync(join(projectRoot, 'bench-results'), { recursive: true })
writeFileSync(join(projectRoot, 'bench-results', 'cache.json'), JSON.stringify({ when: new Date().toISOString(), args, micro: microRows, http: web }, null, 2))
