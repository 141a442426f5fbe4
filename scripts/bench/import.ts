import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import pg from 'pg'
import copyStreams from 'pg-copy-streams'
import { migrate } from '../../services/domain/migrate.js'
import { PRODUCTS, US_STATES } from '../../services/domain/lead-schemas.js'
import { freePort } from '../../test/helpers/ports.js'
import { startService, table } from './lib.js'

// The data-service's lead import over HTTP (CSV streamed, validated, upserted in batches) against the floor:
// the same rows sent with one COPY into a table of the same shape, no validation, no upsert.
const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '100000' } } })
const ROWS = Number(args.rows)
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = 'bench_import'
const SERVICE_KEY = 'bench-import-service-key-0123456789abcdef'
const log = (m: string): void => console.log(`[bench:import] ${m}`)

const admin = new pg.Client({ connectionString: DATABASE_URL })
await admin.connect()
await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })

const lines = ['firstName,lastName,email,phone,product,state,source,score']
for (let i = 0; i < ROWS; i++) {
  lines.push(`First${i},Last${i},lead${i}@example.com,+1 555 ${String(i % 10000000).padStart(7, '0')},${PRODUCTS[i % PRODUCTS.length]},${US_STATES[i % US_STATES.length]},partner,${i % 101}`)
}
const csv = Buffer.from(lines.join('\n') + '\n')
log(`${ROWS} rows, ${(csv.length / 1e6).toFixed(1)} MB of CSV`)

const service = await startService('dist/services/data-service/main.js', { DATABASE_URL, DB_SCHEMA: SCHEMA, SERVICE_API_KEY: SERVICE_KEY, RATE_LIMIT_ENABLED: 'false' }, await freePort())
async function importOnce (): Promise<{ ms: number, report: Record<string, number> }> {
  const started = performance.now()
  // Sent in 64 KiB chunks without a content-length: the service parses and writes while the body streams.
  const chunks = Readable.from((function * () { for (let o = 0; o < csv.length; o += 65536) yield csv.subarray(o, o + 65536) })())
  const res = await fetch(`${service.url}/data/v1/imports/leads`, { method: 'POST', headers: { 'content-type': 'text/csv', 'x-service-key': SERVICE_KEY }, body: Readable.toWeb(chunks) as ReadableStream, duplex: 'half' } as RequestInit)
  const report = await res.json() as Record<string, number>
  if (res.status !== 200) throw new Error(`import answered ${res.status}: ${JSON.stringify(report)}`)
  return { ms: performance.now() - started, report }
}

async function copyFloor (): Promise<number> {
  await admin.query(`DROP TABLE IF EXISTS ${SCHEMA}.copy_floor; CREATE TABLE ${SCHEMA}.copy_floor (LIKE ${SCHEMA}.leads INCLUDING DEFAULTS INCLUDING INDEXES)`)
  const started = performance.now()
  const copy = admin.query(copyStreams.from(`COPY ${SCHEMA}.copy_floor (first_name, last_name, email, phone, product, state, source, score) FROM STDIN WITH (FORMAT csv, HEADER true)`))
  await pipeline(Readable.from([csv]), copy)
  return performance.now() - started
}

try {
  const first = await importOnce()
  const again = await importOnce()
  const floor = await copyFloor()
  const { rows: [n] } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.leads`)
  console.log(`\nImport of ${ROWS} leads as CSV over HTTP (data-service, batches of 1000), against one COPY of the same rows:\n`)
  console.log(table([
    { run: 'import into an empty table', seconds: (first.ms / 1000).toFixed(2), 'rows/s': Math.round(ROWS / (first.ms / 1000)), inserted: first.report.inserted ?? 0, updated: first.report.updated ?? 0, unchanged: first.report.unchanged ?? 0, rejected: first.report.rejected ?? 0 },
    { run: 're-import of the same file (idempotent)', seconds: (again.ms / 1000).toFixed(2), 'rows/s': Math.round(ROWS / (again.ms / 1000)), inserted: again.report.inserted ?? 0, updated: again.report.updated ?? 0, unchanged: again.report.unchanged ?? 0, rejected: again.report.rejected ?? 0 },
    { run: 'floor: one COPY, no validation, no upsert', seconds: (floor / 1000).toFixed(2), 'rows/s': Math.round(ROWS / (floor / 1000)), inserted: ROWS, updated: 0, unchanged: 0, rejected: 0 }
  ]))
  console.log(`\nleads in the table: ${n?.n}; import / COPY time = ${(first.ms / floor).toFixed(2)}x; target: ${ROWS} leads in under 30 s: ${first.ms < 30000 ? 'met' : 'NOT met'}`)
} finally {
  await service.stop()
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.end()
}
