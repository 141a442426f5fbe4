import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/domain/paths.js'
import { seed } from '../../services/domain/seed.js'
import { preparePrefix, templateConfig } from '../../test/helpers/nginx.js'
import { freePort } from '../../test/helpers/ports.js'
import { chartSvg } from './chart.js'
import { startService, table, type Service } from './lib.js'
import { buildWorkload, replay, type BenchRequest } from './workload.js'

// `npm run bench`: the specification's before/after table on this machine, next to the ceiling and to what a
// user would assemble from today's libraries, all under the same request mix. See docs/benchmarks.md for a run.
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '4' },
    connections: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '1' },
    leads: { type: 'string', default: '100000' },
    keys: { type: 'string', default: '2000' },
    writes: { type: 'string', default: '0.02' },
    scale: { type: 'string', default: '10000,100000,1000000' },
    'scale-duration': { type: 'string', default: '8' },
    out: { type: 'string', default: 'bench-results' },
    // A comma-separated subset of the configurations to load (before, after, after-direct, ceiling, alternative).
    only: { type: 'string', default: '' }
  }
})
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
const workload = buildWorkload({ ids: idRows.map((r) => r.id), size: 200000, writes: Number(args.writes) })
log(`${Number(args.leads)} leads, ${keys.length} API keys, a sequence of ${workload.length} requests (${(workload.filter((r) => r.method === 'PATCH').length / workload.length * 100).toFixed(1)}% writes)`)

// --- The four configurations. ---
// The load generator is one address standing for 2,000 callers: the per-address key-lookup budget is off.
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, LOG_LEVEL: 'warn', DB_POOL_MAX: '20', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', API_KEY_LOOKUP_LIMIT: '0' }
const before = await startService('dist/services/api/main.js', { ...base, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false' }, await freePort())
children.push(before)
const tag = `bench${process.pid}`
const ours = { ...base, REDIS_URL, CACHE_ENABLED: 'true', RATE_LIMIT_ENABLED: 'true', CACHE_PREFIX: `${tag}:c:`, RATE_LIMIT_PREFIX: `${tag}:rl:`, TRUST_PROXY: '127.0.0.1/32' }
const apis = [await startService('dist/services/api/main.js', ours, await freePort()), await startService('dist/services/api/main.js', ours, await freePort())]
children.push(...apis)
let afterUrl = apis[0]?.url ?? ''
let afterName = 'after: cache + rate limit, one api instance (NGINX is not installed)'
if (spawnSync('nginx', ['-v']).status === 0) {
  const [publicPort, statusPort, spare1, spare2, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const prefix = preparePrefix(templateConfig({ api: apis.map((a) => Number(new URL(a.url).port)), dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort }))
  const nginx: ChildProcess = spawn('nginx', ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] })
  children.push({ stop: async () => { if (nginx.exitCode === null) { nginx.kill('SIGQUIT'); await once(nginx, 'exit') } } })
  for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${publicPort}/`).then(() => true, () => false)); i++) await sleep(50)
  afterUrl = `http://127.0.0.1:${publicPort}`
  afterName = 'after: cache + rate limit, NGINX, two api instances'
} else {
  log('nginx is not installed: "after" runs against one api instance directly')
}
const alternative = await startService('dist/scripts/bench/alternative-server.js', { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL }, await freePort())
children.push(alternative)
const ceiling = await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${apis[0]?.url ?? ''}/api/v1/leads`, BENCH_API_KEY: keys[0] ?? '' }, await freePort())
children.push(ceiling)
// The same stack without NGINX, to show what the proxy hop costs on a machine where everything shares the cores.
const direct = await startService('dist/services/api/main.js', { ...ours, CACHE_PREFIX: `${tag}:d:` }, await freePort())
children.push(direct)
const configs: Array<{ id: string, name: string, url: string }> = [
  { id: 'before', name: 'before: no cache, no rate limit, one api instance', url: before.url },
  { id: 'after', name: afterName, url: afterUrl },
  { id: 'after-direct', name: 'after, one api instance, no NGINX', url: direct.url },
  { id: 'ceiling', name: 'ceiling: bare Fastify, the same bytes from memory', url: ceiling.url },
  { id: 'alternative', name: 'alternative: @fastify/rate-limit + a plain Redis cache', url: alternative.url }
]

// --- Load: every configuration replays the same sequence from the same point. ---
interface Measured { rps: number, avg: number, p50: number, p95: number, p99: number, errors: number, non2xx: number, requests: number }

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
    requests: result.requests.total
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
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const c of configs.filter((c) => !args.only || args.only.split(',').includes(c.id))) {
    await run(c.url, Number(args.warmup), connections, workload, 0)
    const counters = c.id === 'after' ? await serviceCounters(apis) : {}
    const r = await run(c.url, duration, connections, workload, 50000)
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
    log(`round ${round} ${c.id}: ${r.rps.toFixed(0)} req/s, p95 ${r.p95} ms, ${r.errors} errors, ${r.non2xx} non-2xx`)
  }
}
const median = (id: string, f: keyof Measured): number => {
  const values = (results[id] ?? []).map((r) => r[f]).sort((a, b) => a - b)
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
const rows = configs.map((c) => ({
  configuration: c.name,
  'req/s': Math.round(median(c.id, 'rps')),
  'avg ms': median(c.id, 'avg'),
  'p50 ms': median(c.id, 'p50'),
  'p95 ms': median(c.id, 'p95'),
  'p99 ms': median(c.id, 'p99'),
  errors: median(c.id, 'errors') + median(c.id, 'non2xx')
}))
const ratio = (a: string, b: string): number => Math.round((median(a, 'rps') / Math.max(1, median(b, 'rps'))) * 100) / 100
const ratios = { afterOverBefore: ratio('after', 'before'), afterOverCeiling: ratio('after', 'ceiling'), afterOverAlternative: ratio('after', 'alternative') }
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGb: Math.round(totalmem() / 1e9), node: process.version, date: new Date().toISOString() }
const command = `npm run bench -- --duration ${args.duration} --connections ${args.connections} --rounds ${args.rounds} --writes ${args.writes}`
const markdown = [
  `Measured ${machine.date.slice(0, 10)} on ${machine.cpus} CPUs (${machine.cpu}), ${machine.memoryGb} GB, Node ${machine.node}; load generator on the same machine.`,
  `Command: \`${command}\`. ${Number(args.leads)} leads; GET /api/v1/leads with a skewed mix of filters, single leads and ${Number(args.writes) * 100}% PATCHes; ${connections} connections, ${duration} s per configuration${Number(args.rounds) > 1 ? `, median of ${args.rounds} rounds` : ''}.`,
  '',
  table(rows),
  '',
  `after / before = ${ratios.afterOverBefore}x (target >= 7); after / ceiling = ${Math.round(ratios.afterOverCeiling * 100)}%; after / alternative = ${ratios.afterOverAlternative}x (target >= 1); after without NGINX / before = ${ratio('after-direct', 'before')}x`,
  `Cache hit rates in "after": NGINX answered ${hitRates.edge}% of requests from its micro-cache (${hitRates.authPerRequest} auth subrequests per request); of what reached the services, local ${hitRates.local}% of lookups, Redis ${hitRates.redis}% of what reached it, ${hitRates.combined}% of reads answered without PostgreSQL.`,
  '',
  'Scale: the uncached list (filters mix, first pages), 50 connections:',
  '',
  table(scale.map((s) => ({ leads: s.leads, 'req/s': s.rps, 'p50 ms': s.p50, 'p95 ms': s.p95 })))
].join('\n')
const outDir = resolve(projectRoot, args.out ?? 'bench-results')
mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, 'latest.json'), JSON.stringify({ machine, command, configurations: configs.map((c) => ({ ...c, runs: results[c.id] })), ratios, hitRates, scale }, null, 2) + '\n')
writeFileSync(join(outDir, 'latest.md'), markdown + '\n')
writeFileSync(join(outDir, 'latest.svg'), chartSvg(configs.map((c) => ({ name: c.id, rps: median(c.id, 'rps'), p50: median(c.id, 'p50'), p95: median(c.id, 'p95'), p99: median(c.id, 'p99') })), `GET /api/v1/leads mix, ${machine.cpus} CPUs, ${machine.date.slice(0, 10)}`) + '\n')
console.log(`\n${markdown}\n\nwritten: ${join(outDir, 'latest.{json,md,svg}')} in ${((performance.now() - started) / 1000).toFixed(0)} s`)
