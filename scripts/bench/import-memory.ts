import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { migrate } from '../../services/domain/migrate.js'
import { freePort } from '../../test/helpers/ports.js'
import { startService, table } from './lib.js'

// The data-service's memory under giant records: `--imports` NDJSON imports posted at once, each holding one record
// of `--mb` MB between small valid ones, against a data-service started here; its resident set is read from /proc
// (VmRSS sampled every 10 ms, and VmHWM, the kernel's peak, reset once the service is warm).
const { values: args } = parseArgs({ options: { imports: { type: 'string', default: '4' }, mb: { type: 'string', default: '99' }, concurrent: { type: 'string' }, 'record-bytes': { type: 'string' } } })
const IMPORTS = Number(args.imports)
const GIANT_BYTES = Math.round(Number(args.mb) * 1024 * 1024)
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = 'bench_import_memory'
const SERVICE_KEY = 'bench-import-memory-key-0123456789abcdef'
const SMALL_ROWS = 2000
const log = (m: string): void => console.log(`[bench:import-memory] ${m}`)

function status (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match?.[1] ?? 0) * 1024
}
const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0)

/** Waits until the resident set holds still (start-up passes through a transient peak it returns afterwards). */
async function settled (pid: number): Promise<number> {
  let last = status(pid, 'VmRSS')
  for (let i = 0; i < 60; i++) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    const now = status(pid, 'VmRSS')
    if (Math.abs(now - last) < 2 * 1024 * 1024) return now
    last = now
  }
  return last
}

const lead = (n: number, i: number): string => JSON.stringify({ firstName: `Big${n}`, lastName: `Row${i}`, email: `mem${n}.${i}@example.com`, product: 'auto', state: 'CA' })

/** One import's body, made while it is sent: small rows, the giant record, small rows; never whole in memory. */
function body (n: number): ReadableStream<Uint8Array> {
  const chunk = 'x'.repeat(65536)
  let phase = 0
  let sent = 0
  let row = 0
  const encoder = new TextEncoder()
  return new ReadableStream({
    pull (controller) {
      if (phase === 0 || phase === 2) {
        const rows: string[] = []
        for (let k = 0; k < 100 && row < (phase === 0 ? SMALL_ROWS / 2 : SMALL_ROWS); k++) rows.push(lead(n, row++))
        if (rows.length > 0) controller.enqueue(encoder.encode(rows.join('\n') + '\n'))
        else if (phase === 0) {
          phase = 1
          controller.enqueue(encoder.encode(`{"firstName":"Giant${n}","lastName":"`))
        } else controller.close()
        return
      }
      if (sent < GIANT_BYTES) {
        controller.enqueue(encoder.encode(chunk))
        sent += chunk.length
        return
      }
      phase = 2
      controller.enqueue(encoder.encode(`","email":"giant${n}@example.com","product":"auto","state":"CA"}\n`))
    }
  })
}

const admin = new pg.Client({ connectionString: DATABASE_URL })
await admin.connect()
await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
await migrate({ databaseUrl: DATABASE_URL, schema: SCHEMA })
const env: Record<string, string> = { DATABASE_URL, DB_SCHEMA: SCHEMA, SERVICE_API_KEY: SERVICE_KEY, RATE_LIMIT_ENABLED: 'false' }
if (args.concurrent) env.IMPORT_MAX_CONCURRENT = args.concurrent
if (args['record-bytes']) env.IMPORT_MAX_RECORD_BYTES = args['record-bytes']
const service = await startService('dist/services/data-service/main.js', env, await freePort())
const pid = service.child.pid as number
const post = async (n: number): Promise<{ status: number, report: Record<string, unknown> }> => {
  const res = await fetch(`${service.url}/data/v1/imports/leads`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'x-service-key': SERVICE_KEY }, body: body(n), duplex: 'half' } as RequestInit)
  return { status: res.status, report: await res.json() as Record<string, unknown> }
}

try {
  // Warm: one small import (no giant record) so the code paths are loaded before the baseline is read.
  const warm = await fetch(`${service.url}/data/v1/imports/leads`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'x-service-key': SERVICE_KEY }, body: Array.from({ length: SMALL_ROWS }, (_, i) => lead(0, i)).join('\n') })
  if (warm.status !== 200) throw new Error(`warm-up import answered ${warm.status}`)
  await warm.arrayBuffer()
  const baseline = await settled(pid)
  let hwmReset = true
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5') } catch { hwmReset = false }
  let sampled = baseline
  const sampler = setInterval(() => { sampled = Math.max(sampled, status(pid, 'VmRSS')) }, 10)
  const started = performance.now()
  const results = await Promise.all(Array.from({ length: IMPORTS }, (_, i) => post(i + 1)))
  const seconds = (performance.now() - started) / 1000
  clearInterval(sampler)
  const peak = Math.max(sampled, hwmReset ? status(pid, 'VmHWM') : 0)
  log(`${IMPORTS} imports at once, each ${SMALL_ROWS} small rows and one record of ${mib(GIANT_BYTES)} MiB; IMPORT_MAX_CONCURRENT=${env.IMPORT_MAX_CONCURRENT ?? 'default'}, IMPORT_MAX_RECORD_BYTES=${env.IMPORT_MAX_RECORD_BYTES ?? 'default'}; ${seconds.toFixed(1)} s`)
  console.log(table(results.map((r, i) => ({
    import: i + 1,
    status: r.status,
    code: String(r.report.code ?? ''),
    rows: Number(r.report.rows ?? 0),
    inserted: Number(r.report.inserted ?? 0),
    rejected: Number(r.report.rejected ?? 0),
    reason: String((r.report.rejections as Array<{ reason: string }> | undefined)?.[0]?.reason ?? '')
  }))))
  const accepted = results.filter((r) => r.status === 200).length
  console.log(`\nRSS before: ${mib(baseline)} MiB; peak during: ${mib(peak)} MiB (${hwmReset ? 'VmHWM after reset, and VmRSS sampled every 10 ms' : 'VmRSS sampled every 10 ms'}); ` +
    `rise ${mib(peak - baseline)} MiB for ${accepted} imports running at once (${accepted > 0 ? mib((peak - baseline) / accepted) : '-'} MiB each)`)
} finally {
  await service.stop()
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.end()
}
