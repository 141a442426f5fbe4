import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/platform/paths.js'
import { seed } from '../../services/domain/seed.js'
import { preparePrefix, templateConfig } from '../../test/helpers/nginx.js'
import { freePort } from '../../test/helpers/ports.js'
import { chartSvg } from './chart.js'
import { edgeTimingRows, withEdgeTimingLog } from './edge-timing.js'
import { median as medianOf, processCpuMs, startService, statusCounts, table, type Service } from './lib.js'
import { buildWorkload, replay, type BenchRequest } from './workload.js'

// `npm run bench`: the before/after table (no cache against cache and rate limit) on this machine, next to the ceiling and to what a
// user would assemble from today's libraries, all under the same request mix. See docs/benchmarks.md for a run.
const SCALE = '10000,100000,1000000'
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '4' },
    // Each connection stands for its own client address (workload.ts, replay); 250 keep the 2,000 keys at 8 per
    // address, within what NGINX's key gate lets one address verify (2 a second, each verdict kept 5 s).
    connections: { type: 'string' },
    // `skewed` (the default): the mix of lists, single leads and PATCHes below. `one-url`: the load of the feature
    // list's own figures, `wrk -c400 -d30s http://localhost/api/v1/leads`: every request a GET of /api/v1/leads,
    // no writes, 400 connections unless --connections says otherwise.
    mix: { type: 'string', default: 'skewed' },
    // Rounds interleave the configurations, every other round in reverse order; each ratio is the median of the
    // rounds' own ratios. One round moved after / ceiling from 74% to 54% between two runs of the same commit.
    rounds: { type: 'string', default: '3' },
    leads: { type: 'string', default: '100000' },
    keys: { type: 'string', default: '2000' },
    writes: { type: 'string', default: '0.02' },
    scale: { type: 'string', default: SCALE },
    'scale-duration': { type: 'string', default: '8' },
    out: { type: 'string' },
    // A comma-separated subset of the configurations to load (before, after, static, after-direct, ceiling, alternative).
    only: { type: 'string', default: '' },
    // A development run: 5 s per configuration after 2 s of warm-up, no scale runs (its figures are not for docs).
    quick: { type: 'boolean', default: false },
    // NGINX logs every request's cache status and times, and "after" prints where its mean latency goes (edge-timing.ts).
    'edge-log': { type: 'boolean', default: false },
    // Node options for the two api instances behind NGINX, space-separated, e.g. `--api-node-args='--cpu-prof
    // --cpu-prof-dir /tmp/p'` (with `--only after`, profiles of "after" alone) or `--api-node-args=--perf-basic-prof`.
    'api-node-args': { type: 'string', default: '' }
  }
})
if (args.quick) Object.assign(args, { duration: '5', warmup: '2', scale: '' })
if (args.mix !== 'skewed' && args.mix !== 'one-url') throw new Error(`--mix must be skewed or one-url, not ${args.mix}`)
const oneUrl = args.mix === 'one-url'
// 400 connections keep the 2,000 keys at 5 per address, within the edge's key gate, as 250 keep them at 8.
args.connections ??= oneUrl ? '400' : '250'
if (oneUrl) Object.assign(args, { writes: '0', scale: '' })
// The one-URL run's results do not replace the mix's.
args.out ??= oneUrl ? 'bench-results/one-url' : 'bench-results'
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_full'
const log = (m: string): void => console.log(`[bench] ${m}`)
const started = performance.now()
const children: Array<{ stop: () => Promise<void> }> = []

// --- Data: 100k leads, a hot set of ids, API keys for many clients (each under the apiKey preset's limit). ---
async function prepareSchema (schema: string, leads: number): Promise<void> {
  await migrate({ databaseUrl: DATABASE_URL, schema })
  const pool = createConnectionPool({ connectionString: DATABASE_URL, schema, min: 0, max: 1, healthCheckInterval: 0 })
  try {
    const { rows: [row] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
    const missing = leads - (row?.n ?? 0)
    if (missing > 0) {
      log(`seeding ${missing} leads into ${schema}`)
      await seed({ databaseUrl: DATABASE_URL, schema, count: missing })
      await pool.query('ANALYZE leads')
    }
  } finally {
    await pool.close()
  }
}

await prepareSchema(SCHEMA, Number(args.leads))
const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: SCHEMA, min: 0, max: 4, healthCheckInterval: 0 })
await pool.query("DELETE FROM api_keys WHERE name = 'bench'")
const store = new ApiKeyStore(pool)
const keys: string[] = []
for (let i = 0; i < Number(args.keys); i += 50) {
  keys.push(...(await Promise.all(Array.from({ length: Math.min(50, Number(args.keys) - i) }, async () => (await store.mint('bench', ['leads:read', 'leads:write'])).key))))
}
// Earlier runs left dead rows behind (their PATCHes, their keys): every run starts from a vacuumed table.
await pool.query('VACUUM (ANALYZE) leads, lead_activities, api_keys')
const { rows: idRows } = await pool.query<{ id: string }>('SELECT id FROM leads ORDER BY md5(id::text) LIMIT 5000')
await pool.close()
const workload: BenchRequest[] = oneUrl ? [{ method: 'GET', path: '/api/v1/leads' }] : buildWorkload({ ids: idRows.map((r) => r.id), size: 200000, writes: Number(args.writes) })
log(`${Number(args.leads)} leads, ${keys.length} API keys, a sequence of ${workload.length} requests (${(workload.filter((r) => r.method === 'PATCH').length / workload.length * 100).toFixed(1)}% writes)`)

// --- The four configurations. ---
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, LOG_LEVEL: 'warn', DB_POOL_MAX: '20', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }
const before = await startService('dist/services/api/main.js', { ...base, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false' }, await freePort())
children.push(before)
const tag = `bench${process.pid}`
const ours = { ...base, REDIS_URL, CACHE_ENABLED: 'true', RATE_LIMIT_ENABLED: 'true', CACHE_PREFIX: `${tag}:c:`, RATE_LIMIT_PREFIX: `${tag}:rl:`, TRUST_PROXY: '127.0.0.1/32' }
const apiNodeArgs = (args['api-node-args'] ?? '').split(' ').filter((a) => a !== '')
const apis = [await startService('dist/services/api/main.js', ours, await freePort(), apiNodeArgs), await startService('dist/services/api/main.js', ours, await freePort(), apiNodeArgs)]
children.push(...apis)
let afterUrl = apis[0]?.url ?? ''
let afterName = 'after: cache + rate limit, one api instance (NGINX is not installed)'
let staticUrl = ''
let nginxPid: number | undefined
let edgeLog = ''
if (spawnSync('nginx', ['-v']).status === 0) {
  const [publicPort, statusPort, spare1, spare2, keyGatePort, staticPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  // The physical limit of the edge: the same NGINX (its http block: access log, gzip, workers) answering every
  // GET with the same bytes as a static file, no auth, no proxy, no cache; a PATCH gets {}.
  const sample = workload.find((r) => r.path.startsWith('/api/v1/leads?'))?.path ?? '/api/v1/leads'
  const answer = Buffer.from(await (await fetch(`${apis[0]?.url ?? ''}${sample}`, { headers: { 'x-api-key': keys[0] ?? '' } })).arrayBuffer())
  const staticServer = `
  server {
    listen 127.0.0.1:${staticPort};
    include security-headers.conf;
    location / {
      default_type application/json;
      if ($request_method = PATCH) { return 200 '{}'; }
      root static-answer;
      try_files /answer.json =404;
    }
  }
}`
  const config = templateConfig({ api: apis.map((a) => Number(new URL(a.url).port)), dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort })
  // Where the image keeps its caches: a memory-backed folder (an emptyDir with medium Memory), not a disk.
  const served = config.replace(/\}\s*$/, staticServer)
  const prefix = preparePrefix(args['edge-log'] ? withEdgeTimingLog(served, 'edge-timing.log') : served, existsSync('/dev/shm') ? '/dev/shm' : undefined)
  if (args['edge-log']) edgeLog = join(prefix, 'edge-timing.log')
  mkdirSync(join(prefix, 'static-answer'))
  writeFileSync(join(prefix, 'static-answer', 'answer.json'), answer)
  const nginx: ChildProcess = spawn('nginx', ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] })
  nginxPid = nginx.pid
  // The prefix is in memory: it goes with NGINX, and with a run that fails.
  process.on('exit', () => { nginx.kill('SIGQUIT'); rmSync(prefix, { recursive: true, force: true }) })
  children.push({ stop: async () => { if (nginx.exitCode === null) { nginx.kill('SIGQUIT'); await once(nginx, 'exit') } rmSync(prefix, { recursive: true, force: true }) } })
  for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${publicPort}/`).then(() => true, () => false)); i++) await sleep(50)
  afterUrl = `http://127.0.0.1:${publicPort}`
  afterName = 'after: cache + rate limit, NGINX, two api instances'
  staticUrl = `http://127.0.0.1:${staticPort}`
  log(`static-file limit: every GET answered with ${sample}'s ${answer.length} bytes`)
} else {
  log('nginx is not installed: "after" runs against one api instance directly, and there is no static-file row')
}
const alternative = await startService('dist/scripts/bench/alternative-server.js', { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL }, await freePort())
children.push(alternative)
const ceiling = await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${apis[0]?.url ?? ''}/api/v1/leads`, BENCH_API_KEY: keys[0] ?? '' }, await freePort())
children.push(ceiling)
// The same stack without NGINX, to show what the proxy hop costs on a machine where everything shares the cores.
const direct = await startService('dist/services/api/main.js', { ...ours, CACHE_PREFIX: `${tag}:d:` }, await freePort())
children.push(direct)
// What a cached answer costs NGINX: the 20 most read requests of the mix, with the same 8 keys per connection as
// the mix (each used many times within its verdict's 5 s), so nearly every answer is a verdict and an answer from
// NGINX's caches; the mix itself also pays for verdicts renewed (each key every 5 s) and the answers that miss. One
// key per connection would send a key about 100 requests a second, past the edge's 1,000 a minute per key, and
// most answers would be NGINX's 429s, not cached answers.
const readCounts = new Map<string, number>()
for (const r of workload) if (r.method === 'GET') readCounts.set(r.path, (readCounts.get(r.path) ?? 0) + 1)
const hottest = [...readCounts].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([path]): BenchRequest => ({ method: 'GET', path }))
const configs: Array<{ id: string, name: string, url: string, sequence?: BenchRequest[], callers?: string[] }> = [
  { id: 'before', name: 'before: no cache, no rate limit, one api instance', url: before.url },
  { id: 'after', name: afterName, url: afterUrl },
  ...(staticUrl
    ? [
        { id: 'after-cached', name: `after, cached answers only (the ${hottest.length} most read, ${Math.ceil(keys.length / Number(args.connections))} keys per connection)`, url: afterUrl, sequence: hottest },
        { id: 'static', name: 'static-file limit: the same NGINX, the same bytes from a file', url: staticUrl }
      ]
    : []),
  { id: 'after-direct', name: 'after, one api instance, no NGINX', url: direct.url },
  { id: 'ceiling', name: 'ceiling: bare Fastify, the same bytes from memory', url: ceiling.url },
  { id: 'alternative', name: 'alternative: @fastify/rate-limit (auto-pipelined) + bentocache (two tiers, its bus)', url: alternative.url }
]

// --- Load: every configuration replays the same sequence from the same point. ---
interface Measured { rps: number, avg: number, p50: number, p95: number, p99: number, errors: number, non2xx: number, statuses: string, requests: number, bytes: number, edgeCpuUs?: number, edgeCores?: number }

/** The configurations that go through the NGINX started here, whose CPU per answer is measured. */
const EDGE_ROWS = new Set(staticUrl ? ['after', 'after-cached', 'static'] : [])
const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100)

/**
 * CPU seconds (user + system) used so far by each process `pick` chooses by pid, parent pid and command name, from
 * /proc, as cpu-share.sh reads them.
 */
function cpuSeconds (pick: (pid: number, ppid: number, command: string) => boolean): Map<number, number> {
  const byPid = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8') } catch { continue }
    // Fields after the command name (which may hold spaces): state, ppid, ..., utime (14th field), stime (15th).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (pick(Number(entry), Number(fields[1]), stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')))) byPid.set(Number(entry), (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND)
  }
  return byPid
}

/**
 * The CPU seconds the processes of `now` used since `before`: a process started since counts whole, one that
 * exited since is left out (its last seconds are lost, not its whole life subtracted: a PostgreSQL backend whose
 * connection closed during the run would otherwise make the sum fall).
 */
function cpuSince (before: Map<number, number>, now: Map<number, number>): number {
  let seconds = 0
  for (const [pid, used] of now) seconds += used - (before.get(pid) ?? 0)
  return seconds
}

/** The NGINX master and its workers. */
const nginxCpu = (): Map<number, number> => nginxPid === undefined ? new Map() : cpuSeconds((pid, ppid) => pid === nginxPid || ppid === nginxPid)
/** Redis and PostgreSQL, every process of theirs: on a shared machine, other users' load too. */
const serversCpu = (): Map<number, number> => cpuSeconds((_pid, _ppid, command) => command === 'redis-server' || command === 'postgres')

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

async function run (url: string, seconds: number, connections: number, sequence: BenchRequest[], offset: number, callers: string[] = keys): Promise<Measured> {
  const latencies: number[] = []
  const result = await replay(url, { seconds, connections, sequence, offset, callers, onResponse: (time) => { latencies.push(time) } }).done
  latencies.sort((a, b) => a - b)
  const round = (x: number): number => Math.round(x * 10) / 10
  return {
    rps: result.requests.average,
    avg: round(latencies.reduce((s, x) => s + x, 0) / Math.max(1, latencies.length)),
    p50: round(percentile(latencies, 0.5)),
    p95: round(percentile(latencies, 0.95)),
    p99: round(percentile(latencies, 0.99)),
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    // Which answers were not 2xx (429s from a limiter, 503s from a shed or a pool) says whose they were.
    statuses: statusCounts(result, true),
    requests: result.requests.total,
    bytes: Math.round(result.throughput.total / Math.max(1, result.requests.total))
  }
}

/**
 * The api instances' counters, summed, from one read of each /metrics: cache outcomes per tier (`local_hit`, ...),
 * and requests answered, edge auth subrequests (`requests_auth`) apart from the rest (`requests_other`).
 */
async function serviceCounters (services: Service[]): Promise<Record<string, number>> {
  const totals: Record<string, number> = {}
  const add = (k: string, n: number): void => { totals[k] = (totals[k] ?? 0) + n }
  for (const s of services) {
    const text = await (await fetch(`${s.url}/metrics`)).text()
    for (const m of text.matchAll(/^cache_operations\{tier="(\w+)",outcome="(\w+)"[^}]*\} (\d+)/gm)) add(`${m[1]}_${m[2]}`, Number(m[3]))
    for (const m of text.matchAll(/^http_requests_total\{([^}]*)\} (\d+)/gm)) {
      const labels = m[1] ?? ''
      if (!labels.includes('route="/metrics"')) add(labels.includes('route="/api/v1/edge/auth"') ? 'requests_auth' : 'requests_other', Number(m[2]))
    }
  }
  return totals
}

const results: Record<string, Measured[]> = {}
let hitRates = { local: 0, redis: 0, combined: 0, edge: 0, authPerRequest: 0 }
const duration = Number(args.duration)
const connections = Number(args.connections)
// The run order puts the configurations a printed ratio compares next to each other ("after" between "before" and the
// ceiling, the cached answers beside the static file), so both sides of a ratio run within a minute of each other:
// this machine's speed drifts over minutes, every process alike (docs/benchmarks.md, "Noise"). A configuration not
// named here runs last.
const RUN_ORDER = ['before', 'after', 'ceiling', 'alternative', 'after-direct', 'after-cached', 'static']
const rank = (id: string): number => RUN_ORDER.includes(id) ? RUN_ORDER.indexOf(id) : RUN_ORDER.length
const ordered = [...configs].sort((a, b) => rank(a.id) - rank(b.id))
const chosen = ordered.filter((c) => !args.only || args.only.split(',').includes(c.id))
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const c of round % 2 === 0 ? [...chosen].reverse() : chosen) {
    await run(c.url, Number(args.warmup), connections, c.sequence ?? workload, 0, c.callers)
    const counters = c.id === 'after' ? await serviceCounters(apis) : {}
    const cpu0 = nginxCpu()
    const t0 = performance.now()
    const from = Date.now()
    const ownCpu0 = process.cpuUsage()
    const apiCpu0 = apis.map((a) => processCpuMs(a) ?? 0)
    const serversCpu0 = c.id === 'after' ? serversCpu() : new Map<number, number>()
    const r = await run(c.url, duration, connections, c.sequence ?? workload, 50000, c.callers)
    const to = Date.now()
    // The load generator is this process: on the same cores, what it uses the configuration under load cannot.
    const own = process.cpuUsage(ownCpu0)
    const loadCpuUs = Math.round((own.user + own.system) / Math.max(1, r.requests))
    const loadCores = ((own.user + own.system) / 1000 / (to - from)).toFixed(2)
    // Behind the edge in "after": every process's CPU per answer, side by side, shows when the machine itself ran
    // slower or faster (they move together) rather than one part of the stack.
    const behind = c.id === 'after'
      ? { api: apis.reduce((s, a, i) => s + (processCpuMs(a) ?? 0) - (apiCpu0[i] ?? 0), 0), servers: cpuSince(serversCpu0, serversCpu()) * 1000 }
      : undefined
    const perAnswer = (cpuMs: number): string => `${Math.round(cpuMs * 1000 / Math.max(1, r.requests))} µs (${(cpuMs / (to - from)).toFixed(2)} cores)`
    if (edgeLog && behind) {
      await sleep(1500) // the log's buffer is flushed every second
      const text = readFileSync(edgeLog, 'utf8')
      writeFileSync(resolve(projectRoot, args.out ?? 'bench-results', 'edge-timing.log'), text)
      const timing = edgeTimingRows(text, from, to)
      log(`where "after" waits: the client's mean ${r.avg} ms, NGINX's mean $request_time ${timing.meanMs} ms; CPU per answer: the api instances ${perAnswer(behind.api)}, Redis and PostgreSQL ${perAnswer(behind.servers)}\n${table(timing.rows)}`)
    }
    if (EDGE_ROWS.has(c.id)) {
      const cpu = cpuSince(cpu0, nginxCpu())
      r.edgeCpuUs = Math.round(cpu / Math.max(1, r.requests) * 1e6)
      r.edgeCores = Math.round(cpu / ((performance.now() - t0) / 1000) * 100) / 100
    }
    if (c.id === 'after') {
      const now = await serviceCounters(apis)
      const d = (k: string): number => (now[k] ?? 0) - (counters[k] ?? 0)
      const rate = (hit: number, miss: number): number => (hit + miss === 0 ? 0 : Math.round((hit / (hit + miss)) * 1000) / 10)
      // A local miss goes on to Redis; a Redis miss goes to PostgreSQL.
      // What NGINX answered from its micro-cache never reached an api instance (0 when "after" has no NGINX).
      const edge = afterUrl === apis[0]?.url ? 0 : Math.max(0, Math.round((1 - d('requests_other') / Math.max(1, r.requests)) * 1000) / 10)
      const authPerRequest = Math.round((d('requests_auth') / Math.max(1, r.requests)) * 1000) / 1000
      hitRates = { local: rate(d('local_hit'), d('local_miss')), redis: rate(d('redis_hit'), d('redis_miss')), combined: rate(d('local_hit') + d('redis_hit'), d('redis_miss')), edge, authPerRequest }
    }
    ;(results[c.id] ??= []).push(r)
    log(`round ${round} ${c.id}: ${r.rps.toFixed(0)} req/s, p95 ${r.p95} ms, ${r.errors} errors, ${r.non2xx} non-2xx${r.statuses === '' ? '' : ` (${r.statuses})`}, the load generator ${loadCpuUs} µs CPU per answer (${loadCores} cores)${r.edgeCpuUs === undefined ? '' : `, NGINX ${r.edgeCpuUs} µs (${r.edgeCores} cores)`}${behind ? `, the api instances ${perAnswer(behind.api)}, Redis and PostgreSQL ${perAnswer(behind.servers)}; NGINX answered ${hitRates.edge}% from its cache, ${hitRates.combined}% of the reads behind it skipped PostgreSQL` : ''}`)
  }
}
const median = (id: string, f: Exclude<keyof Measured, 'statuses'>): number => {
  const values = (results[id] ?? []).map((r) => r[f] ?? 0).sort((a, b) => a - b)
  return values[Math.floor(values.length / 2)] ?? 0
}
for (const c of children.splice(0)) await c.stop()

// --- Scale: the uncached list's latency as the table grows. ---
const scale: Array<{ leads: number, rps: number, p50: number, p95: number }> = []
for (const size of (args.scale ?? '').split(',').filter(Boolean).map(Number)) {
  const schema = `bench_scale_${size}`
  await prepareSchema(schema, size)
  const spool = createConnectionPool({ connectionString: DATABASE_URL, schema, min: 0, max: 1, healthCheckInterval: 0 })
  await spool.query("DELETE FROM api_keys WHERE name = 'bench'")
  const key = (await new ApiKeyStore(spool).mint('bench', ['leads:read'])).key
  await spool.close()
  const service = await startService('dist/services/api/main.js', { ...base, DB_SCHEMA: schema, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false' }, await freePort())
  const lists = buildWorkload({ ids: [], byId: 0, writes: 0, size: 20000, seed: 7 })
  await run(service.url, 2, 50, lists, 0, [key])
  const r = await run(service.url, Number(args['scale-duration']), 50, lists, 5000, [key])
  await service.stop()
  scale.push({ leads: size, rps: Math.round(r.rps), p50: r.p50, p95: r.p95 })
  log(`scale ${size} leads: p95 ${r.p95} ms, ${r.rps.toFixed(0)} req/s`)
}

// --- Report. ---
// With --only, the configurations not run have no row and no ratio.
const ran = (id: string): boolean => (results[id]?.length ?? 0) > 0
const rows = configs.filter((c) => ran(c.id)).map((c) => ({
  configuration: c.name,
  'req/s': Math.round(median(c.id, 'rps')),
  'avg ms': median(c.id, 'avg'),
  'p50 ms': median(c.id, 'p50'),
  'p95 ms': median(c.id, 'p95'),
  'p99 ms': median(c.id, 'p99'),
  errors: median(c.id, 'errors') + median(c.id, 'non2xx'),
  'bytes/answer': median(c.id, 'bytes'),
  'NGINX µs CPU/answer': EDGE_ROWS.has(c.id) ? median(c.id, 'edgeCpuUs') : ''
}))
/** The rounds' own ratios of a to b (round i of a with round i of b), in round order. */
const roundRatios = (a: string, b: string, f: 'rps' | 'edgeCpuUs' = 'rps'): number[] =>
  (results[a] ?? []).flatMap((r, i) => {
    const other = results[b]?.[i]
    return other === undefined ? [] : [(r[f] ?? 0) / Math.max(1, other[f] ?? 0)]
  })
const medianRatio = (a: string, b: string, f: 'rps' | 'edgeCpuUs' = 'rps'): number => {
  const values = roundRatios(a, b, f)
  return values.length > 0 ? medianOf(values) : 0
}
const ratio = (a: string, b: string): number => Math.round(medianRatio(a, b) * 100) / 100
/** ` (rounds 74%, 74%, 54%)` when there was more than one round. */
const perRound = (a: string, b: string, show: (x: number) => string, f: 'rps' | 'edgeCpuUs' = 'rps'): string => {
  const values = roundRatios(a, b, f)
  return values.length > 1 ? ` (rounds ${values.map(show).join(', ')})` : ''
}
const percent = (x: number): string => `${Math.round(x * 100)}%`
const times2 = (x: number): string => `${Math.round(x * 100) / 100}x`
const times1 = (x: number): string => `${Math.round(x * 10) / 10}x`
const ratios = { afterOverBefore: ratio('after', 'before'), afterOverCeiling: ratio('after', 'ceiling'), afterOverAlternative: ratio('after', 'alternative') }
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGb: Math.round(totalmem() / 1e9), node: process.version, date: new Date().toISOString() }
const mixArg = oneUrl ? ' --mix one-url' : ''
const command = args.quick
  ? `npm run bench --${mixArg} --quick --connections ${args.connections} --rounds ${args.rounds} --writes ${args.writes}${args.only ? ` --only ${args.only}` : ''}`
  : `npm run bench --${mixArg} --duration ${args.duration} --connections ${args.connections} --rounds ${args.rounds}${oneUrl ? '' : ` --writes ${args.writes}`}${oneUrl || args.scale === SCALE ? '' : ` --scale '${args.scale ?? ''}'`}${args.only ? ` --only ${args.only}` : ''}`
const times = (id: string): number => Math.round(medianRatio(id, 'static', 'edgeCpuUs') * 10) / 10
// A row through the edge whose answers are mostly refusals (429s are cheap) says nothing of what an answer costs.
const notOkShare = (id: string): number => median(id, 'non2xx') / Math.max(1, median(id, 'requests'))
const refusals = (id: string): string => notOkShare(id) > 0.01 ? ` (WARNING: ${Math.round(notOkShare(id) * 100)}% of its answers were not 2xx, so this is not the cost of an answer)` : ''
// A ratio of rows that did not answer what they were asked (500s are often quicker than answers) compares nothing.
const failures = (...ids: string[]): string => ids.map((id) => notOkShare(id) > 0.001 ? ` (WARNING: ${(notOkShare(id) * 100).toFixed(1)}% of ${id}'s answers were not 2xx)` : '').join('')
const edgeCost = staticUrl
  ? `NGINX CPU per answer (master and workers, from /proc): "after" ${median('after', 'edgeCpuUs')} µs (${median('after', 'edgeCores')} cores busy), ${times('after')}x the static-file limit${perRound('after', 'static', times1, 'edgeCpuUs')}; a cached answer ${median('after-cached', 'edgeCpuUs')} µs (${median('after-cached', 'edgeCores')} cores), ${times('after-cached')}x (target <= 2)${perRound('after-cached', 'static', times1, 'edgeCpuUs')}${refusals('after-cached')}; the static file ${median('static', 'edgeCpuUs')} µs (${median('static', 'edgeCores')} cores).`
  : 'No static-file row: NGINX is not installed.'
const markdown = [
  `Measured ${machine.date.slice(0, 10)} on ${machine.cpus} CPUs (${machine.cpu}), ${machine.memoryGb} GB, Node ${machine.node}; load generator on the same machine.`,
  `Command: \`${command}\`. ${Number(args.leads)} leads; ${oneUrl ? 'every request GET /api/v1/leads (the first page), no writes' : `GET /api/v1/leads with a skewed mix of filters, single leads and ${Number(args.writes) * 100}% PATCHes`}; ${connections} connections, each from its own loopback address with ${Math.ceil(keys.length / connections)} of the ${keys.length} keys, ${duration} s per configuration${Number(args.rounds) > 1 ? `, median of ${args.rounds} rounds (every other round in reverse order; each ratio the median of the rounds' own ratios)` : ''}.`,
  '',
  table(rows),
  '',
  [
    ran('after') && ran('before') ? `after / before = ${ratios.afterOverBefore}x (target >= 7)${perRound('after', 'before', times2)}${failures('after', 'before')}` : '',
    ran('after') && ran('ceiling') ? `after / ceiling = ${Math.round(ratios.afterOverCeiling * 100)}% (target >= 60%)${perRound('after', 'ceiling', percent)}${failures('after', 'ceiling')}` : '',
    ran('after') && ran('alternative') ? `after / alternative = ${ratios.afterOverAlternative}x (target >= 1)${perRound('after', 'alternative', times2)}${failures('after', 'alternative')}` : '',
    ran('after-direct') && ran('before') ? `after without NGINX / before = ${ratio('after-direct', 'before')}x${perRound('after-direct', 'before', times2)}` : ''
  ].filter(Boolean).join('; '),
  ...(!staticUrl || (ran('static') && ran('after') && ran('after-cached')) ? [edgeCost] : []),
  `Cache hit rates in "after": NGINX answered ${hitRates.edge}% of requests from its micro-cache (${hitRates.authPerRequest} auth subrequests per request); of what reached the services, local ${hitRates.local}% of lookups, Redis ${hitRates.redis}% of what reached it, ${hitRates.combined}% of reads answered without PostgreSQL.`,
  ...(scale.length === 0
    ? []
    : ['', 'Scale: the uncached list (filters mix, first pages), 50 connections:', '', table(scale.map((s) => ({ leads: s.leads, 'req/s': s.rps, 'p50 ms': s.p50, 'p95 ms': s.p95 })))])
].join('\n')
const outDir = resolve(projectRoot, args.out ?? 'bench-results')
mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, 'latest.json'), JSON.stringify({ machine, command, configurations: configs.map((c) => ({ ...c, runs: results[c.id] })), ratios, hitRates, scale }, null, 2) + '\n')
writeFileSync(join(outDir, 'latest.md'), markdown + '\n')
writeFileSync(join(outDir, 'latest.svg'), chartSvg(configs.map((c) => ({ name: c.id, rps: median(c.id, 'rps'), p50: median(c.id, 'p50'), p95: median(c.id, 'p95'), p99: median(c.id, 'p99') })), `GET /api/v1/leads ${oneUrl ? 'alone' : 'mix'}, ${machine.cpus} CPUs, ${machine.date.slice(0, 10)}`) + '\n')
console.log(`\n${markdown}\n\nwritten: ${join(outDir, 'latest.{json,md,svg}')} in ${((performance.now() - started) / 1000).toFixed(0)} s`)
