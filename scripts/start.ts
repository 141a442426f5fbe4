import { randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { redactUrl } from '@lead-chassis/plugins/chassis'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../services/domain/migrate.js'
import { projectRoot } from '../services/platform/paths.js'
import { seed } from '../services/domain/seed.js'
import { loadStartConfig } from './lib/start-config.js'
import { openDatabase } from './lib/database.js'
import type { WatchdogMessage } from './lib/pg-watchdog.js'

const started = performance.now()
// Read first: npm may be killed while the database starts.
const parentPid = process.ppid
const log = (message: string): void => console.log(`[start] ${message}`)
const config = loadStartConfig()

/** The services `npm start` runs, each from its own listening entry, as production does. */
const SERVICES = [
  { name: 'api', entry: 'dist/services/api/main.js', port: config.API_PORT, path: '/api/v1/leads', prefix: '/api/v1' },
  { name: 'data-service', entry: 'dist/services/data-service/main.js', port: config.DATA_SERVICE_PORT, path: '/data/v1/reports/leads', prefix: '/data/v1' },
  { name: 'orchestrator', entry: 'dist/services/orchestrator/main.js', port: config.ORCHESTRATOR_PORT, path: '/orchestrator/v1/route-batch', prefix: '/orchestrator/v1' }
]
// The services call each other with a shared service key: one is made up for this run unless one is given (an
// empty one, as a .env copied from .env.example has, is none: the orchestrator refuses to start without one).
const serviceKey = config.SERVICE_API_KEY || randomBytes(24).toString('base64url')
const DEMO_SCOPES = ['leads:read', 'leads:write', 'leads:import', 'reports:read', 'routing']
const db = await openDatabase({ databaseUrl: config.DATABASE_URL, port: config.EMBEDDED_PG_PORT, dataDir: config.EMBEDDED_PG_DATA_DIR, log })
// Stops the embedded PostgreSQL this run started should this process die without doing it (SIGKILL, a crash):
// PostgreSQL would run on, reparented (scripts/lib/pg-watchdog.ts). A process group of its own, as the services'.
const watchdog = db.postmasterPid === undefined
  ? undefined
  : spawn(process.execPath, [join(projectRoot, 'dist', 'scripts', 'lib', 'pg-watchdog.js'), String(db.postmasterPid)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], detached: true })
watchdog?.channel?.unref()
watchdog?.unref()

const applied = await migrate({ databaseUrl: db.url, schema: config.DB_SCHEMA })
if (applied.length > 0) log(`migrations applied: ${applied.join(', ')}`)
const client = new pg.Client({ connectionString: db.url, options: `-c search_path=${config.DB_SCHEMA}` })
await client.connect()
const { rows } = await client.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM leads) AS any')
await client.end()
if (!rows[0]?.any && config.SEED_COUNT > 0) {
  const result = await seed({ databaseUrl: db.url, schema: config.DB_SCHEMA, count: config.SEED_COUNT })
  log(`seeded ${result.leads} demo leads and ${result.agents} agents in ${result.ms} ms`)
}
// A demo key with read and write scopes, minted on the first embedded start and kept (git-ignored) for the next.
let demoKey: string | undefined
if (db.embedded) {
  const file = `${join(projectRoot, config.EMBEDDED_PG_DATA_DIR)}.demo-key`
  demoKey = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined
  if (!demoKey) {
    const pool = createConnectionPool({ connectionString: db.url, schema: config.DB_SCHEMA, min: 0, max: 1, healthCheckInterval: 0 })
    try {
      demoKey = (await new ApiKeyStore(pool).mint('demo (npm start)', DEMO_SCOPES)).key
    } finally {
      await pool.close()
    }
    writeFileSync(file, `${demoKey}\n`, { mode: 0o600 })
    log(`minted a demo API key with scopes ${DEMO_SCOPES.join(', ')} (kept in ${file})`)
  }
}
if (!config.REDIS_URL) log('REDIS_URL is unset: single-instance mode (in-process cache, rate limiter and events; each service caches for itself, so a change made through one service reaches the others\' caches only when their entries expire)')

const children = new Map<string, ChildProcess>()
let stopping = false

async function stopAll (code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => {})
  stopping = true
  log('stopping services')
  await Promise.all([...children.values()].map(async (child) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    // The service sends itself SIGTERM when its channel closes (scripts/lib/stop-with-parent.ts).
    if (child.connected) child.disconnect()
    else child.kill('SIGTERM')
    await exited
  }))
  // PostgreSQL is stopped here, in order: the watchdog is not needed for it.
  watchdog?.kill('SIGTERM')
  if (db.shared) {
    log('the embedded PostgreSQL another npm start runs is left running')
  } else if (db.embedded) {
    await db.stop().then(() => log('embedded PostgreSQL stopped'), (e: Error) => log(`stopping the embedded PostgreSQL: ${e.message}`))
  }
  process.exit(code)
}
// The services run in process groups of their own (`detached`), so Ctrl-C reaches this process only and each service
// gets one SIGTERM, when stopAll closes its channel: had the terminal's SIGINT reached them too, that SIGTERM would be
// a second signal, which cuts a service's shutdown short (exit code 1). Closing the terminal stops them the same way,
// and so does this process dying, even by SIGKILL: its end closes the channels. Another Ctrl-C while they stop is
// passed on: a second signal is how an operator cuts a shutdown short.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (!stopping) {
      void stopAll(0)
      return
    }
    for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  })
}

// npm start's own process can die without a word reaching this one: `kill -9` of npm leaves this process running,
// reparented, and with it every service (they watch this process's channel, not npm). npm gives this process no
// pipe whose end it could read (stdio is inherited) and Node has no parent-death signal, so the parent is polled:
// once reparented (npm runs this process through `exec`, so npm is its parent), its parent pid changes. Once a
// second, unref'd: it never keeps the process up, and the services then stop as on SIGTERM.
const parentWatch = setInterval(() => {
  if (process.ppid === parentPid) return
  clearInterval(parentWatch)
  log(`the parent process (pid ${parentPid}) is gone; stopping everything`)
  void stopAll(1)
}, 1000).unref()

for (const service of SERVICES) {
  // Started as production starts them: the OpenTelemetry preload first (it does nothing unless an exporter is set).
  const child = spawn(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), '--import', import.meta.resolve('./lib/stop-with-parent.js'), join(projectRoot, service.entry)], {
    cwd: projectRoot,
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true,
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      DB_SCHEMA: config.DB_SCHEMA,
      PORT: String(service.port),
      NODE_ENV: process.env.NODE_ENV ?? 'development',
      SERVICE_API_KEY: serviceKey,
      DATA_SERVICE_URL: process.env.DATA_SERVICE_URL ?? `http://127.0.0.1:${config.DATA_SERVICE_PORT}`,
      OTEL_SERVICE_NAME: process.env.OTEL_SERVICE_NAME ?? service.name
    }
  })
  children.set(service.name, child)
  child.once('exit', (code, signal) => {
    if (stopping) return
    log(`${service.name} exited (${signal ?? code}); stopping everything`)
    void stopAll(1)
  })
}

async function waitReady (port: number): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health/ready`)).ok) return true
    } catch {
      // Not listening yet.
    }
    await sleep(100)
  }
  return false
}

// The watchdog waits for these to drain before it stops PostgreSQL.
watchdog?.send({ services: [...children.values()].map((c) => c.pid).filter((pid) => pid !== undefined) } satisfies WatchdogMessage)

const ready = await Promise.all(SERVICES.map((s) => waitReady(s.port)))
if (ready.includes(false)) {
  log('a service did not become ready within 30 s')
  await stopAll(1)
}
log(`database: ${redactUrl(db.url) ?? ''}${db.embedded ? ' (embedded)' : ''}`)
for (const s of SERVICES) log(`${s.name}: http://127.0.0.1:${s.port}${s.path}`)
// The reference pages are on unless OPENAPI_UI_ENABLED=false; each service's OpenAPI document is always served.
const docsOn = (process.env.OPENAPI_UI_ENABLED ?? 'true').trim().toLowerCase() !== 'false'
for (const s of SERVICES) log(`${s.name} API reference: ${docsOn ? `http://127.0.0.1:${s.port}${s.prefix}/docs (document: ` : '('}http://127.0.0.1:${s.port}${s.prefix}/openapi.json)`)
log(`lead-capture form: http://127.0.0.1:${config.API_PORT}/quote/`)
if (demoKey) {
  log(`demo API key (${DEMO_SCOPES.join(', ')}): ${demoKey}`)
  log(`try: curl -s -H 'x-api-key: ${demoKey}' 'http://127.0.0.1:${config.API_PORT}/api/v1/leads?status=new&limit=5'`)
  log(`     curl -s -H 'x-api-key: ${demoKey}' 'http://127.0.0.1:${config.DATA_SERVICE_PORT}/data/v1/reports/funnel'`)
  log(`     curl -s -X POST -H 'x-api-key: ${demoKey}' -H 'content-type: application/json' -d '{"limit":5}' 'http://127.0.0.1:${config.ORCHESTRATOR_PORT}/orchestrator/v1/route-batch'`)
}
log(`ready in ${((performance.now() - started) / 1000).toFixed(1)} s; Ctrl-C stops everything`)
