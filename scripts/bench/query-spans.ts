// The CPU a traced query costs the service's process, by the way its database span is made: at the db-pool seam
// (the default), by the pg instrumentation (OTEL_PG_INSTRUMENTATION=true), or not at all (no tracing). Each way runs
// in a new process started as production starts it (the preload, OTLP export to a sink on this machine), issuing
// queries inside a parent span the way a request does; no HTTP and no load generator share the measurement.
// `npm run bench:query-spans` (needs PostgreSQL).
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { trace } from '@opentelemetry/api'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { median, runPreloaded, table } from './lib.js'
import { startOtlpSink } from './otlp-sink.js'

const { values: args } = parseArgs({ options: { child: { type: 'string' }, queries: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '7' } } })
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

if (args.child !== undefined) {
  // In the child: warm up, then report the process's CPU per query over the measured queries.
  const pool = createConnectionPool({ connectionString: DATABASE_URL, min: 4, max: 4, healthCheckInterval: 0 })
  await pool.start()
  const tracer = trace.getTracer('bench')
  const one = (i: number): Promise<unknown> => tracer.startActiveSpan('GET /bench', async (span) => {
    try {
      return await pool.query('SELECT $1::int AS n, now() AS at', [i])
    } finally {
      span.end()
    }
  })
  const runQueries = async (n: number): Promise<void> => {
    let next = 0
    await Promise.all(Array.from({ length: 8 }, async () => { while (next < n) await one(next++) }))
  }
  await runQueries(Number(args.queries) / 4)
  const before = process.cpuUsage()
  await runQueries(Number(args.queries))
  const used = process.cpuUsage(before)
  await pool.close()
  process.stdout.write(JSON.stringify({ cpuUsPerQuery: (used.user + used.system) / Number(args.queries) }))
} else {
  const modes: Record<string, Record<string, string>> = {
    'no tracing': {},
    'spans from the db-pool seam (default)': { OTEL_TRACES_SAMPLER: 'always_on' },
    'spans from the pg instrumentation': { OTEL_TRACES_SAMPLER: 'always_on', OTEL_PG_INSTRUMENTATION: 'true' }
  }
  const sink = await startOtlpSink()
  const script = fileURLToPath(import.meta.url)
  const runChild = async (env: Record<string, string>): Promise<number> => {
    const traced = Object.keys(env).length > 0
    const otel: Record<string, string> = traced ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', OTEL_SERVICE_NAME: 'bench' } : {}
    return (await runPreloaded<{ cpuUsPerQuery: number }>(script, ['--child', 'run', '--queries', String(args.queries)], { DATABASE_URL, ...otel, ...env })).cpuUsPerQuery
  }
  const results: Record<string, number[]> = {}
  for (let round = 1; round <= Number(args.rounds); round++) {
    const order = Object.entries(modes)
    if (round % 2 === 0) order.reverse()
    for (const [name, env] of order) (results[name] ??= []).push(await runChild(env))
    console.log(`[bench:query-spans] round ${round}: ${Object.entries(results).map(([n, r]) => `${n} ${(r.at(-1) ?? NaN).toFixed(1)} µs`).join(', ')}`)
  }
  sink.close()
  const base = median(results['no tracing'] ?? [NaN])
  console.log(`\n${args.queries} queries per process inside a parent span, 8 at a time, ${args.rounds} rounds of a new process per way, medians of the process's CPU per query:\n`)
  console.log(table(Object.keys(modes).map((name) => {
    const cpu = median(results[name] ?? [NaN])
    return { 'database spans': name, 'CPU µs per query': cpu.toFixed(1), 'tracing adds, µs': name === 'no tracing' ? '' : (cpu - base).toFixed(1) }
  })))
}
