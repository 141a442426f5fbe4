import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { load, median, startService, table, type LoadResult, type Service } from './lib.js'
import { startOtlpSink, type OtlpSink } from './otlp-sink.js'

const { values: args } = parseArgs({ options: { duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' }, rounds: { type: 'string', default: '11' }, breakdown: { type: 'string', default: 'false' }, warmup: { type: 'string', default: '8' }, variant: { type: 'string', multiple: true, default: [] } } })
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = 'bench_tracing'
const log = (m: string): void => console.log(`[bench:tracing] ${m}`)
const CLOCK_TICKS = 100 // USER_HZ of /proc/<pid>/stat on Linux

await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })
const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: SCHEMA, min: 0, max: 1, healthCheckInterval: 0 })
const { rows: [count] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
if ((count?.n ?? 0) < 10000) await seed({ databaseUrl: DATABASE_URL, schema: SCHEMA, count: 10000 - (count?.n ?? 0) })
const { key } = await new ApiKeyStore(pool).mint('bench:tracing', ['leads:read'])
await pool.close()


// PostgreSQL on every request: no cache, no rate limiter.
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', OTEL_SERVICE_NAME: 'api' }
const preload = ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]
// Each traced configuration exports to a sink of its own, which counts the spans that arrive.
const sinks: Record<string, OtlpSink> = {}
const requests: Record<string, number> = {}
interface Config { env: Record<string, string>, traced: boolean }
const configs: Record<string, Config> = {}
configs['tracing and query statistics off'] = { env: { QUERY_STATS_ENABLED: 'false' }, traced: false }
configs['tracing (100% sampled, OTLP export) and query statistics on'] = { env: { QUERY_STATS_ENABLED: 'true' }, traced: true }
if (args.breakdown === 'true') {
  // Where the loss goes: the instrumentation alone (nothing sampled), then spans recorded and exported.
  configs['instrumentation only (sampler always_off), query statistics off'] = { env: { QUERY_STATS_ENABLED: 'false', OTEL_TRACES_SAMPLER: 'always_off' }, traced: true }
  configs['tracing (100% sampled, OTLP export), query statistics off'] = { env: { QUERY_STATS_ENABLED: 'false' }, traced: true }
}
// --variant 'name:KEY=value,KEY=value': tracing on (100% sampled, query statistics on) with these variables too.
for (const variant of args.variant ?? []) {
  const [name, vars = ''] = variant.split(':')
  const extra = Object.fromEntries(vars.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]))
  configs[`tracing and query statistics on, ${name}`] = { env: { QUERY_STATS_ENABLED: 'true', ...extra }, traced: true }
}
for (const [name, config] of Object.entries(configs)) if (config.traced) sinks[name] = await startOtlpSink()
async function start (name: string): Promise<Service> {
  const config = configs[name] as Config
  const sink = sinks[name]
  const otel: Record<string, string> = sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', OTEL_TRACES_SAMPLER: 'always_on' } : {}
  return await startService('dist/services/api/main.js', { ...base, ...otel, ...config.env }, await freePort(), preload)
}
const run = async (name: string, url: string, seconds: number): Promise<LoadResult> => {
  const r = await load(url, Number(args.connections), seconds, { 'x-api-key': key })
  requests[name] = (requests[name] ?? 0) + r.requests
  return r
}
interface CpuTime { total: number, user: number }
/**
 * CPU time the service's process (or its main thread, which runs the event loop) has used, in ms: user and system
 * together, and user alone (Linux /proc; undefined elsewhere).
 */
function cpuMs (service: Service, mainThread = false): CpuTime | undefined {
  try {
    const pid = service.child.pid
    const fields = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    const user = Number(fields[11]) * 1000 / CLOCK_TICKS
    return { total: user + Number(fields[12]) * 1000 / CLOCK_TICKS, user }
  } catch {
    return undefined
  }
}
const results: Record<string, LoadResult[]> = {}
// The service's CPU per request in each round: throughput alone cannot tell a slower service from a busier machine.
const cpuPerRequest: Record<string, number[]> = {}
// The event loop's thread alone: the one a request waits for. Work moved to other threads leaves this figure.
const mainPerRequest: Record<string, number[]> = {}
// User time alone: the service's own code (tracing included), without the kernel's socket work, which swings most
// between rounds on a shared machine.
const userPerRequest: Record<string, number[]> = {}
let running: Service | undefined
try {
  for (let round = 1; round <= Number(args.rounds); round++) {
    // Every other round runs the configurations in reverse order, so a drift of the machine over a round does not
    // favour the configuration that always runs first.
    const order = Object.keys(configs)
    if (round % 2 === 0) order.reverse()
    for (const name of order) {
      // A new process for every configuration in every round: two processes of the same build differ by several
      // percent in speed for as long as they live (memory layout, JIT decisions), which more rounds of the same pair
      // would never average out.
      const service = running = await start(name)
      const url = `${service.url}/api/v1/leads?status=new&limit=20`
      // The first distinct queries make V8 compile PostgreSQL's parser (WebAssembly) to optimized code in the
      // background, seconds of CPU once per process, which the measurement would otherwise count per request.
      await run(name, url, Number(args.warmup))
      const cpuBefore = cpuMs(service)
      const mainBefore = cpuMs(service, true)
      const r = await run(name, url, Number(args.duration))
      const cpuAfter = cpuMs(service)
      const mainAfter = cpuMs(service, true)
      // A service exports its queued spans as it shuts down, so every span is counted before the sinks close.
      await service.stop()
      running = undefined
      if (cpuBefore !== undefined && cpuAfter !== undefined) {
        ;(cpuPerRequest[name] ??= []).push((cpuAfter.total - cpuBefore.total) * 1000 / r.requests)
        ;(userPerRequest[name] ??= []).push((cpuAfter.user - cpuBefore.user) * 1000 / r.requests)
      }
      if (mainBefore !== undefined && mainAfter !== undefined) (mainPerRequest[name] ??= []).push((mainAfter.total - mainBefore.total) * 1000 / r.requests)
      if (r.errors + r.non2xx > 0) throw new Error(`${name}: ${r.errors} errors, ${r.non2xx} non-2xx`)
      ;(results[name] ??= []).push(r)
      log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms`)
    }
  }
} finally {
  await running?.stop()
  for (const sink of Object.values(sinks)) sink.close()
}
const med = (name: string, f: keyof LoadResult): number => median((results[name] ?? []).map((r) => r[f]))
const names = Object.keys(configs)
console.log(`\nGET /api/v1/leads?status=new (PostgreSQL every request), autocannon ${args.connections} connections, ${args.rounds} rounds interleaved, each a new process warmed up ${args.warmup} s then measured ${args.duration} s, medians:\n`)
const cpu = (name: string): number => median(cpuPerRequest[name] ?? [NaN])
const mainCpu = (name: string): number => median(mainPerRequest[name] ?? [NaN])
const userCpu = (name: string): number => median(userPerRequest[name] ?? [NaN])
console.log(table(names.map((name) => ({ configuration: name, 'req/s': med(name, 'rps').toFixed(0), 'avg ms': med(name, 'avgMs').toFixed(2), 'p99 ms': med(name, 'p99Ms').toFixed(0), 'service CPU µs/request': cpu(name).toFixed(0), 'event-loop thread CPU µs/request': mainCpu(name).toFixed(0), 'service user CPU µs/request': userCpu(name).toFixed(0) }))))
// The machine drifts over a run (other processes, CPU frequency): each round's traced throughput is compared with
// the untraced one measured in the same round, and the loss is the median of those paired ratios.
const losses = (name: string): number[] => (results[name] ?? []).map((r, i) => 1 - r.rps / ((results[names[0] as string] ?? [])[i]?.rps ?? NaN))
const describe = (name: string): string => {
  const l = losses(name)
  return `${(median(l) * 100).toFixed(1)}% (per round ${l.map((x) => (x * 100).toFixed(1)).join(', ')})`
}
for (const name of names.slice(2)) console.log(`throughput lost by "${name}": ${describe(name)}`)
for (const [name, sink] of Object.entries(sinks)) {
  console.log(`spans received from "${name}": ${sink.spans()} for ${requests[name] ?? 0} requests (${(sink.spans() / (requests[name] ?? 1)).toFixed(2)} per request, ${(sink.bytes() / (requests[name] ?? 1)).toFixed(0)} bytes per request)`)
}
const change = (x: number, base: number): string => `${x >= base ? '+' : ''}${((x / base - 1) * 100).toFixed(1)}%`
for (const name of names.slice(1)) {
  if (cpuPerRequest[name]) console.log(`service CPU per request, "${name}": ${change(cpu(name), cpu(names[0] as string))}; event-loop thread: ${change(mainCpu(name), mainCpu(names[0] as string))}; user time alone: ${change(userCpu(name), userCpu(names[0] as string))} (medians)`)
}
console.log(`\nthroughput lost to tracing and query statistics: ${describe(names[1] as string)}; target < 10%`)
