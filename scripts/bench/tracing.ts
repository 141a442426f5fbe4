import { createServer } from 'node:http'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '../../plugins/api-keys/index.js'
import { createConnectionPool } from '../../plugins/db-pool/index.js'
import { migrate } from '../../services/domain/migrate.js'
import { projectRoot } from '../../services/domain/paths.js'
import { seed } from '../../services/domain/seed.js'
import { freePort } from '../../test/helpers/ports.js'
import { load, median, startService, table, type LoadResult } from './lib.js'

const { values: args } = parseArgs({ options: { duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' }, rounds: { type: 'string', default: '3' }, 'fastify-otel': { type: 'string', default: 'true' }, breakdown: { type: 'string', default: 'false' }, warmup: { type: 'string', default: '10' }, variant: { type: 'string', multiple: true, default: [] } } })
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = 'bench_tracing'
const log = (m: string): void => console.log(`[bench:tracing] ${m}`)

await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })
const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: SCHEMA, min: 0, max: 1, healthCheckInterval: 0 })
const { rows: [count] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
if ((count?.n ?? 0) < 10000) await seed({ databaseUrl: DATABASE_URL, schema: SCHEMA, count: 10000 - (count?.n ?? 0) })
const { key } = await new ApiKeyStore(pool).mint('bench:tracing', ['leads:read'])
await pool.close()

// An OTLP/HTTP sink on this machine: the exporter does its real work (serialize, send), the sink discards.
let exported = 0
const sink = createServer((req, res) => {
  req.on('data', (c: Buffer) => { exported += c.length })
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'))
})
const sinkPort = await freePort()
sink.listen(sinkPort, '127.0.0.1')

// PostgreSQL on every request: no cache, no rate limiter.
const base = { DATABASE_URL, DB_SCHEMA: SCHEMA, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', OTEL_SERVICE_NAME: 'api' }
const preload = ['--import', join(projectRoot, 'dist', 'plugins', 'telemetry', 'otel-preload.js')]
const off = await startService('dist/services/api/main.js', { ...base, QUERY_STATS_ENABLED: 'false' }, await freePort(), preload)
const on = await startService('dist/services/api/main.js', { ...base, QUERY_STATS_ENABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}`, OTEL_TRACES_SAMPLER: 'always_on', OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', OTEL_FASTIFY_ENABLED: args['fastify-otel'] ?? 'true' }, await freePort(), preload)
const configs: Record<string, Awaited<ReturnType<typeof startService>>> = { 'tracing and query statistics off': off, 'tracing (100% sampled, OTLP export) and query statistics on': on }
if (args.breakdown === 'true') {
  // Where the loss goes: the instrumentation alone (nothing sampled), then spans recorded and exported.
  const traced = { ...base, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}`, OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', OTEL_FASTIFY_ENABLED: args['fastify-otel'] ?? 'true', QUERY_STATS_ENABLED: 'false' }
  configs['instrumentation only (sampler always_off), query statistics off'] = await startService('dist/services/api/main.js', { ...traced, OTEL_TRACES_SAMPLER: 'always_off' }, await freePort(), preload)
  configs['tracing (100% sampled, OTLP export), query statistics off'] = await startService('dist/services/api/main.js', { ...traced, OTEL_TRACES_SAMPLER: 'always_on' }, await freePort(), preload)
}
// --variant 'name:KEY=value,KEY=value': tracing on (100% sampled, query statistics on) with these variables too.
for (const variant of args.variant ?? []) {
  const [name, vars = ''] = variant.split(':')
  const extra = Object.fromEntries(vars.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]))
  configs[`tracing and query statistics on, ${name}`] = await startService('dist/services/api/main.js', { ...base, QUERY_STATS_ENABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}`, OTEL_TRACES_SAMPLER: 'always_on', OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', ...extra }, await freePort(), preload)
}
const results: Record<string, LoadResult[]> = {}
try {
  // Once per configuration, before any round: the first distinct queries make V8 compile PostgreSQL's parser
  // (WebAssembly) to optimized code in the background, seconds of CPU once per process, which a short round would
  // otherwise count as overhead per request.
  for (const [name, service] of Object.entries(configs)) {
    await load(`${service.url}/api/v1/leads?status=new&limit=20`, Number(args.connections), Number(args.warmup), { 'x-api-key': key })
    log(`warmed up ${name} for ${args.warmup} s`)
  }
  for (let round = 1; round <= Number(args.rounds); round++) {
    for (const [name, service] of Object.entries(configs)) {
      const url = `${service.url}/api/v1/leads?status=new&limit=20`
      await load(url, Number(args.connections), 1, { 'x-api-key': key })
      const r = await load(url, Number(args.connections), Number(args.duration), { 'x-api-key': key })
      if (r.errors + r.non2xx > 0) throw new Error(`${name}: ${r.errors} errors, ${r.non2xx} non-2xx`)
      ;(results[name] ??= []).push(r)
      log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms`)
    }
  }
} finally {
  await Promise.all(Object.values(configs).map((s) => s.stop()))
  sink.close()
}
const med = (name: string, f: keyof LoadResult): number => median((results[name] ?? []).map((r) => r[f]))
const names = Object.keys(configs)
console.log(`\nGET /api/v1/leads?status=new (PostgreSQL every request), autocannon ${args.connections} connections, ${args.duration} s x ${args.rounds} rounds interleaved, medians:\n`)
console.log(table(names.map((name) => ({ configuration: name, 'req/s': med(name, 'rps').toFixed(0), 'avg ms': med(name, 'avgMs').toFixed(2), 'p99 ms': med(name, 'p99Ms').toFixed(0) }))))
const loss = 1 - med(names[1] as string, 'rps') / med(names[0] as string, 'rps')
for (const name of names.slice(2)) console.log(`throughput lost by "${name}": ${((1 - med(name, 'rps') / med(names[0] as string, 'rps')) * 100).toFixed(1)}%`)
console.log(`\nthroughput lost to tracing and query statistics: ${(loss * 100).toFixed(1)}% (target < 10%); ${(exported / 1e6).toFixed(1)} MB of spans exported`)
