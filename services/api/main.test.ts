import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { projectRoot } from '../platform/paths.js'
import { createTestSchema, SERVICE_HEADERS, TEST_SERVICE_KEY } from '../../test/helpers/database.js'
import { freePort } from '../../test/helpers/ports.js'

const ENTRY = join(projectRoot, 'dist', 'services', 'api', 'main.js')

interface Started {
  child: ChildProcess
  output: () => string
  exit: Promise<number | null>
}

// cwd is a temp folder so a developer's .env cannot change what the test sees.
function startApi (env: Record<string, string>): Started {
  const child = spawn(process.execPath, [ENTRY], { cwd: tmpdir(), env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  return { child, output: () => out, exit }
}

test('bad configuration stops the process before it listens, naming every problem', async () => {
  const port = await freePort()
  const api = startApi({ DATABASE_URL: 'postgres//app:hunter2@db', DB_POOL_MAX: 'abc', PORT: String(port) })
  assert.equal(await api.exit, 1)
  const out = api.output()
  assert.match(out, /CHASSIS_CONFIG_INVALID/)
  assert.match(out, /DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/)
  assert.match(out, /DB_POOL_MAX must be integer/)
  assert.doesNotMatch(out, /hunter2/)
  assert.doesNotMatch(out, /Server listening/)
})

test('a blank PORT stops the process naming it, instead of listening on a port the system picks', async (t) => {
  const api = startApi({ DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', PORT: ' ', DB_POOL_MIN: '0' })
  // Read as 0, the api would listen and run: stopped after 20 s, its output shows where.
  const listening = setTimeout(() => { api.child.kill('SIGKILL') }, 20000)
  t.after(() => { clearTimeout(listening); api.child.kill('SIGKILL') })
  assert.equal(await api.exit, 1, api.output())
  assert.match(api.output(), /CHASSIS_CONFIG_INVALID/)
  assert.match(api.output(), /PORT is blank: give an integer, or leave it empty for its default \(3000\)/)
  assert.doesNotMatch(api.output(), /Server listening/)
})

test('a minimum above the maximum stops the process', async () => {
  const api = startApi({ DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', DB_POOL_MIN: '30', DB_POOL_MAX: '10' })
  assert.equal(await api.exit, 1)
  assert.match(api.output(), /DB_POOL_MIN must not exceed DB_POOL_MAX \(30 > 10\)/)
})

test('an unreachable database stops the process at boot with a non-zero exit', async (t) => {
  // A port held for the whole test that refuses every session: a free port could be taken meanwhile by another
  // test's private PostgreSQL, and the api would then start.
  const refuser = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => refuser.listen(0, '127.0.0.1', resolve))
  t.after(() => { refuser.close() })
  const port = (refuser.address() as { port: number }).port
  const api = startApi({ DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/postgres`, DB_CONNECTION_TIMEOUT: '500', PORT: String(await freePort()) })
  // A process still running after 30 s is killed and its output shown: what it was waiting for is the failure.
  const stuck = setTimeout(() => { api.child.kill('SIGKILL') }, 30000)
  t.after(() => { clearTimeout(stuck); api.child.kill('SIGKILL') })
  assert.equal(await api.exit, 1, `the api did not stop by itself within 30 s; its output:\n${api.output()}`)
  assert.match(api.output(), /DB_UNAVAILABLE/)
  assert.doesNotMatch(api.output(), /hunter2/)
})

test('SIGTERM while a slow request is in flight lets it finish with 200, then exits 0', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  const port = await freePort()
  const url = new URL(db.url)
  url.password = 'hunter2'
  // A replica that is down, with its password in the URL and as a query parameter: neither reaches the log.
  const replica = new URL(db.url)
  replica.password = 'hunter3'
  replica.port = '1'
  replica.search = '?password=hunter4'
  const api = startApi({ SERVICE_API_KEY: TEST_SERVICE_KEY, DATABASE_URL: url.toString(), DATABASE_REPLICA_URLS: replica.toString(), DB_SCHEMA: db.schema, DB_POOL_MIN: '1', DB_POOL_MAX: '3', PORT: String(port), SHUTDOWN_TIMEOUT_MS: '10000' })
  t.after(() => { api.child.kill('SIGKILL') })
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${base}/health/ready`).then((r) => r.ok, () => false)) break
    await sleep(100)
  }

  // Hold the row lock so the PATCH blocks inside the database: a real slow request.
  const locker = new pg.Client({ connectionString: db.url, options: `-c search_path=${db.schema}` })
  await locker.connect()
  t.after(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('SELECT 1 FROM leads WHERE id = $1 FOR UPDATE', [lead?.id])
  const patch = fetch(`${base}/api/v1/leads/${lead?.id}`, { method: 'PATCH', headers: { 'content-type': 'application/json', ...SERVICE_HEADERS }, body: JSON.stringify({ status: 'contacted' }) })
  for (let i = 0; i < 100; i++) {
    const rows = await db.sql("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND datname IS NOT NULL")
    if (rows.length > 0) break
    await sleep(20)
  }
  api.child.kill('SIGTERM')
  await sleep(300)
  assert.equal(api.child.exitCode, null, 'the process waits for the in-flight request')
  await locker.query('COMMIT')
  const res = await patch
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as { status: string }).status, 'contacted')
  const code = await api.exit
  assert.equal(code, 0, api.output().split('\n').slice(-6).join('\n'))
  const out = api.output()
  assert.match(out, /shut down cleanly/)
  assert.match(out, /postgres:\*\*\*@/, 'the configuration log shows the URL with its password masked')
  assert.doesNotMatch(out, /hunter2|hunter3|hunter4/)
  assert.match(out, /"DATABASE_REPLICA_URLS":"postgres:\/\/postgres:\*\*\*@/, 'the replica is in the configuration line, masked')
})

interface LogLine { level: number, code?: string, msg: string, err?: { message?: string } }

function logLines (output: string): LogLine[] {
  return output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine)
}

/** The api with a fault (test/helpers/api-with-fault.ts) on a schema of its own, logging at info, once it is ready. */
async function startFaultyApi (t: TestContext, fault: string, env: Record<string, string> = {}): Promise<Started & { base: string }> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const port = await freePort()
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'test', 'helpers', 'api-with-fault.js')], {
    cwd: tmpdir(),
    env: { PATH: process.env.PATH ?? '', API_FAULT: fault, SERVICE_API_KEY: TEST_SERVICE_KEY, DATABASE_URL: db.url, DB_SCHEMA: db.schema, DB_POOL_MIN: '1', DB_POOL_MAX: '2', PORT: String(port), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  t.after(() => { child.kill('SIGKILL') })
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; i < 300 && child.exitCode === null && !(await fetch(`${base}/health/ready`).then((r) => r.ok, () => false)); i++) await sleep(100)
  assert.equal(child.exitCode, null, out)
  return { child, output: () => out, exit, base }
}

test('an uncaught error while the api runs stops it with code 1 and a coded error line, not saying it shut down cleanly', { timeout: 60000 }, async (t) => {
  const api = await startFaultyApi(t, 'uncaught-error')
  assert.equal((await fetch(`${api.base}/fault`)).status, 200)
  assert.equal(await api.exit, 1, api.output())
  const fatal = logLines(api.output()).find((line) => line.code === 'CHASSIS_FATAL_ERROR')
  assert.ok(fatal, `an error line with the code: ${api.output()}`)
  assert.equal(fatal.level, 50)
  assert.equal(fatal.err?.message, 'a bug nobody caught')
  assert.match(api.output(), /shut down after the fatal error/, 'the shutdown still ran')
  assert.doesNotMatch(api.output(), /shut down cleanly/)
})

test('a plugin whose close never ends is cut at SHUTDOWN_TIMEOUT_MS with code 1 and a coded error line', { timeout: 60000 }, async (t) => {
  const api = await startFaultyApi(t, 'hanging-close', { SHUTDOWN_TIMEOUT_MS: '1500' })
  const signalled = performance.now()
  api.child.kill('SIGTERM')
  assert.equal(await api.exit, 1, api.output())
  const took = performance.now() - signalled
  assert.ok(took >= 1500 * 0.9, `not before SHUTDOWN_TIMEOUT_MS (${Math.round(took)} ms)`)
  const timedOut = logLines(api.output()).find((line) => line.code === 'CHASSIS_SHUTDOWN_TIMEOUT')
  assert.ok(timedOut, `an error line with the code: ${api.output()}`)
  assert.equal(timedOut.level, 50)
  assert.match(timedOut.msg, /SHUTDOWN_TIMEOUT_MS \(1500 ms\)/)
  assert.doesNotMatch(api.output(), /shut down cleanly/)
})

test('a second SIGTERM during the shutdown ends it with code 1 and a coded error line', { timeout: 60000 }, async (t) => {
  const api = await startFaultyApi(t, 'none', { SHUTDOWN_DELAY_MS: '20000', SHUTDOWN_TIMEOUT_MS: '30000' })
  api.child.kill('SIGTERM')
  // Readiness at 503: the first signal is being handled, in SHUTDOWN_DELAY_MS.
  for (let i = 0; i < 100 && (await fetch(`${api.base}/health/ready`)).status !== 503; i++) await sleep(50)
  assert.equal((await fetch(`${api.base}/health/ready`)).status, 503)
  api.child.kill('SIGTERM')
  assert.equal(await api.exit, 1, api.output())
  const interrupted = logLines(api.output()).find((line) => line.code === 'CHASSIS_SHUTDOWN_INTERRUPTED')
  assert.ok(interrupted, `an error line with the code: ${api.output()}`)
  assert.equal(interrupted.level, 50)
  assert.match(interrupted.msg, /SIGTERM/)
  assert.doesNotMatch(api.output(), /shut down cleanly/)
})

test('SIGUSR2 (a diagnostic report) and SIGHUP leave the api serving; SIGTERM then drains it and it exits 0', { timeout: 60000 }, async (t) => {
  const reports = mkdtempSync(join(tmpdir(), 'api-report-'))
  t.after(() => { rmSync(reports, { recursive: true, force: true }) })
  // --report-on-signal is what an operator turns on to get a report from a running instance with SIGUSR2.
  const api = await startFaultyApi(t, 'none', { NODE_OPTIONS: `--report-on-signal --report-directory=${reports}` })
  for (const signal of ['SIGUSR2', 'SIGHUP'] as const) {
    api.child.kill(signal)
    await sleep(500)
    assert.equal(api.child.exitCode, null, `${signal} stopped the api:\n${api.output()}`)
    assert.equal((await fetch(`${api.base}/health/ready`)).status, 200, `ready after ${signal}`)
    const ignored = logLines(api.output()).find((line) => line.msg.includes(signal))
    assert.ok(ignored, `a line says ${signal} was received and does not stop the service: ${api.output()}`)
    assert.match(ignored.msg, /not a shutdown signal/)
  }
  assert.doesNotMatch(api.output(), /shutting down/)
  for (let i = 0; i < 50 && readdirSync(reports).length === 0; i++) await sleep(100)
  assert.equal(readdirSync(reports).filter((name) => name.startsWith('report.')).length, 1, 'SIGUSR2 wrote its diagnostic report')
  api.child.kill('SIGTERM')
  assert.equal(await api.exit, 0, api.output())
  assert.match(api.output(), /shut down cleanly/)
})
