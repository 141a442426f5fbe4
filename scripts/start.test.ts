import { test } from 'node:test'
import { randomBytes, randomUUID } from 'node:crypto'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { projectRoot } from '../services/platform/paths.js'
import { createTestSchema } from '../test/helpers/database.js'
import { freePort } from '../test/helpers/ports.js'

const dataDir = join('.data', `test-start-${process.pid}`)

async function runStart (env: Record<string, string>, whileUp: (out: () => string) => Promise<void>): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'scripts', 'start.js')], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exit = once(child, 'exit')
  try {
    for (let i = 0; i < 600 && !/ready in/.test(out) && child.exitCode === null; i++) await sleep(100)
    assert.match(out, /ready in/, out)
    await whileUp(() => out)
  } finally {
    child.kill('SIGINT')
  }
  const [code] = await exit
  return { code: code as number | null, out }
}

test('npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"', { timeout: 180000 }, async (t) => {
  t.after(() => rmSync(join(projectRoot, dataDir), { recursive: true, force: true }))
  t.after(() => rmSync(`${join(projectRoot, dataDir)}.demo-key`, { force: true }))
  const env = { EMBEDDED_PG_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()), API_PORT: String(await freePort()), DATA_SERVICE_PORT: String(await freePort()), ORCHESTRATOR_PORT: String(await freePort()), SEED_COUNT: '150' }
  const api = `http://127.0.0.1:${env.API_PORT}/api/v1/leads`

  const first = await runStart(env, async (out) => {
    assert.match(out(), /initialising an embedded PostgreSQL/)
    assert.match(out(), /seeded 150 demo leads/)
    // postmaster.pid's fourth line is the port: the database is in EMBEDDED_PG_DATA_DIR and listens on EMBEDDED_PG_PORT.
    assert.equal(readFileSync(join(projectRoot, dataDir, 'postmaster.pid'), 'utf8').split('\n')[3], env.EMBEDDED_PG_PORT)
    assert.equal(out().match(/REDIS_URL is unset: single-instance mode/g)?.length, 1)
    assert.match(out(), new RegExp(`api: ${api}`))
    assert.match(out(), new RegExp(`data-service: http://127.0.0.1:${env.DATA_SERVICE_PORT}/`))
    assert.match(out(), new RegExp(`orchestrator: http://127.0.0.1:${env.ORCHESTRATOR_PORT}/`))
    const form = new RegExp(`lead-capture form: (http://127.0.0.1:${env.API_PORT}/quote/)`).exec(out())?.[1]
    assert.ok(form, 'the form\'s URL is printed')
    for (const [name, port, prefix] of [['api', env.API_PORT, '/api/v1'], ['data-service', env.DATA_SERVICE_PORT, '/data/v1'], ['orchestrator', env.ORCHESTRATOR_PORT, '/orchestrator/v1']]) {
      const page = new RegExp(`${name} API reference: (http://127.0.0.1:${port}${prefix}/docs) \\(document: (http://\\S+/openapi.json)\\)`).exec(out())
      assert.ok(page?.[1] && page[2], `${name}'s reference page URL is printed`)
      assert.match(await (await fetch(page[1])).text(), /swagger-ui/, `${name}'s reference page answers without a key`)
      assert.equal(((await (await fetch(page[2])).json()) as { openapi: string }).openapi, '3.1.0')
    }
    assert.match(await (await fetch(form)).text(), /<form id="lead-form"/)
    const key = /demo API key \(leads:read, leads:write, leads:import, reports:read, routing\): (lck_\S+)/.exec(out())?.[1]
    assert.ok(key, 'a demo key is printed')
    assert.match(out(), /try: curl -s -H 'x-api-key: lck_/)
    assert.equal((await fetch(`${api}?limit=100`)).status, 401, 'listing needs a key')
    const res = await fetch(`${api}?limit=100`, { headers: { 'x-api-key': key } })
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as { data: unknown[] }).data.length, 100)
    const report = await fetch(`http://127.0.0.1:${env.DATA_SERVICE_PORT}/data/v1/reports/leads?groupBy=product`, { headers: { 'x-api-key': key } })
    assert.equal(report.status, 200)
    // The orchestrator reaches the data-service with the service key npm start gave both.
    const routed = await fetch(`http://127.0.0.1:${env.ORCHESTRATOR_PORT}/orchestrator/v1/route-batch`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: '{"limit":3}' })
    assert.equal(routed.status, 200, await routed.clone().text())
    const batch = await routed.json() as { assigned: unknown[], skipped: unknown[] }
    assert.equal(batch.assigned.length + batch.skipped.length, 3)
    // A second npm start shares the running database: stopping it says so and leaves the database to the first.
    const shared = await runStart({ ...env, API_PORT: String(await freePort()), DATA_SERVICE_PORT: String(await freePort()), ORCHESTRATOR_PORT: String(await freePort()) }, async (sharedOut) => {
      assert.match(sharedOut(), /using the embedded PostgreSQL already running/)
    })
    assert.equal(shared.code, 0, shared.out)
    assert.match(shared.out, /the embedded PostgreSQL another npm start runs is left running/)
    assert.doesNotMatch(shared.out, /embedded PostgreSQL stopped/)
    assert.equal((await fetch(`${api}?limit=1`, { headers: { 'x-api-key': key } })).status, 200, 'the first run\'s database still answers')
  })
  assert.equal(first.code, 0, first.out)
  assert.match(first.out, /embedded PostgreSQL stopped/)
  assert.match(first.out, /shut down cleanly/)

  const second = await runStart(env, async (out) => {
    assert.match(out(), /data reused/)
    assert.doesNotMatch(out(), /minted a demo API key/, 'the demo key is kept, not minted again')
    assert.doesNotMatch(out(), /seeded/)
    const created = await fetch(api, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ firstName: 'Ann', lastName: 'Lee', email: 'ann@example.com', product: 'auto', state: 'CA' }) })
    assert.equal(created.status, 201)
  })
  assert.equal(second.code, 0, second.out)
})

test('Ctrl-C in the terminal (SIGINT to the whole foreground group) stops each service once: none has its shutdown cut by a second signal', { timeout: 120000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // Its own process group, as a terminal's foreground job; a drain delay leaves time for a second signal to land.
  const { child, output, exit } = await startReady({ DATABASE_URL: db.url, DB_SCHEMA: db.schema, SHUTDOWN_DELAY_MS: '1000' }, true)
  t.after(() => { try { process.kill(-(child.pid ?? 0), 'SIGKILL') } catch { /* gone */ } })
  process.kill(-(child.pid ?? 0), 'SIGINT')
  const [code] = await exit
  assert.equal(code, 0, output())
  assert.doesNotMatch(output(), /CHASSIS_SHUTDOWN_INTERRUPTED/, 'no service had its shutdown cut')
  assert.equal(output().match(/shut down cleanly/g)?.length, 3, output())
})

/** The state letter of a process (`R`, `S`, `Z`...), or undefined when it is gone. */
function processState (pid: number): string | undefined {
  try {
    // The command name is in parentheses and may hold spaces: the state follows the last one.
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0]
  } catch {
    return undefined
  }
}

/**
 * `node dist/scripts/start.js` with no demo data, on free ports, once it says it is ready; its output collects in
 * `output()`. `detached`: in a process group of its own, as a terminal's foreground job.
 */
async function startReady (env: Record<string, string>, detached = false): Promise<{ child: ChildProcess, output: () => string, exit: Promise<unknown[]> }> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'scripts', 'start.js')], {
    cwd: projectRoot,
    detached,
    env: { PATH: process.env.PATH ?? '', SEED_COUNT: '0', API_PORT: String(await freePort()), DATA_SERVICE_PORT: String(await freePort()), ORCHESTRATOR_PORT: String(await freePort()), ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  // Up to 2 minutes: an embedded PostgreSQL is initialised first.
  return { child, ...await untilReady(child, 120_000) }
}

/** Collects a start's output and waits up to `timeoutMs` for its "ready in" line. */
async function untilReady (child: ChildProcess, timeoutMs: number): Promise<{ output: () => string, exit: Promise<unknown[]> }> {
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const exit = once(child, 'exit')
  for (let waited = 0; waited < timeoutMs && !/ready in/.test(out) && child.exitCode === null; waited += 100) await sleep(100)
  assert.match(out, /ready in/, out)
  return { output: () => out, exit }
}

function childrenOf (pid: number): number[] {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number).filter((other) => {
    try {
      return Number(readFileSync(`/proc/${other}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]) === pid
    } catch {
      return false
    }
  })
}

test('npm start killed with SIGKILL: each service drains and exits within 10 s instead of running on without it', { timeout: 120000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const { child, output, exit } = await startReady({ DATABASE_URL: db.url, DB_SCHEMA: db.schema })
  const services = childrenOf(child.pid ?? 0)
  t.after(() => { for (const pid of services) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } })
  assert.equal(services.length, 3, `npm start runs three services: ${services.join(', ')}`)
  child.kill('SIGKILL')
  await exit
  const killed = performance.now()
  // Reparented, a service may stay a zombie until its new parent reaps it: exited all the same.
  const running = (): number[] => services.filter((pid) => ![undefined, 'Z', 'X'].includes(processState(pid)))
  while (running().length > 0 && performance.now() - killed < 10000) await sleep(50)
  assert.deepEqual(running(), [], `services still running 10 s after npm start was killed:\n${output()}`)
  t.diagnostic(`every service exited ${Math.round(performance.now() - killed)} ms after npm start was killed`)
  await sleep(200)
  assert.equal(output().match(/shut down cleanly/g)?.length, 3, `each service drained: ${output()}`)
  assert.doesNotMatch(output(), /CHASSIS_SHUTDOWN_INTERRUPTED/)
})

test('the npm process of npm start killed with SIGKILL: start.js notices its parent is gone and every service drains and exits within 10 s', { timeout: 120000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // The package's own start script, run by npm, without its build (a build would replace dist/ under running tests):
  // a package of its own whose dist/ is this one's.
  const script = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
  assert.match(script, /^npm run build && /)
  const dir = mkdtempSync(join(tmpdir(), 'npm-start-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  symlinkSync(join(projectRoot, 'dist'), join(dir, 'dist'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'npm-start-test', private: true, type: 'module', scripts: { start: script.replace(/^npm run build && /, '') } }))
  const npm = spawn('npm', ['start'], {
    cwd: dir,
    // This Node first: the script's `node` is the one the project runs on.
    env: { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? dir, DATABASE_URL: db.url, DB_SCHEMA: db.schema, SEED_COUNT: '0', API_PORT: String(await freePort()), DATA_SERVICE_PORT: String(await freePort()), ORCHESTRATOR_PORT: String(await freePort()) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const { output, exit } = await untilReady(npm, 60_000)
  const [start, ...others] = childrenOf(npm.pid ?? 0)
  assert.ok(start !== undefined && others.length === 0, `npm runs start.js itself, no shell between: ${childrenOf(npm.pid ?? 0).join(', ')}`)
  const services = childrenOf(start)
  t.after(() => { for (const pid of [start, ...services]) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } })
  assert.equal(services.length, 3, `npm start runs three services: ${services.join(', ')}`)
  npm.kill('SIGKILL')
  await exit
  const killed = performance.now()
  const running = (): number[] => [start, ...services].filter((pid) => ![undefined, 'Z', 'X'].includes(processState(pid)))
  while (running().length > 0 && performance.now() - killed < 10000) await sleep(50)
  assert.deepEqual(running(), [], `still running 10 s after npm was killed:\n${output()}`)
  t.diagnostic(`start.js and every service exited ${Math.round(performance.now() - killed)} ms after npm was killed`)
  await sleep(200)
  assert.match(output(), /the parent process \(pid \d+\) is gone; stopping everything/)
  assert.equal(output().match(/shut down cleanly/g)?.length, 3, `each service drained: ${output()}`)
  assert.doesNotMatch(output(), /CHASSIS_SHUTDOWN_INTERRUPTED/)
})

test('npm start takes SERVICE_API_KEY from .env as from the environment: the services share that key; a DATA_SERVICE_URL in .env (an older .env.example set one) does not turn the orchestrator from the data-service npm start runs', { timeout: 120000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const dir = mkdtempSync(join(tmpdir(), 'npm-start-env-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const key = randomBytes(32).toString('base64url')
  const nowhere = `http://127.0.0.1:${await freePort()}`
  writeFileSync(join(dir, '.env'), `SERVICE_API_KEY=${key}\nDATA_SERVICE_URL=${nowhere}\n`)
  const ports = { API_PORT: String(await freePort()), DATA_SERVICE_PORT: String(await freePort()), ORCHESTRATOR_PORT: String(await freePort()) }
  // start.js reads .env from its working folder, as npm start in a checkout does.
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'scripts', 'start.js')], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema, SEED_COUNT: '0', ...ports },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const { output, exit } = await untilReady(child, 60_000)
  try {
    const leads = await fetch(`http://127.0.0.1:${ports.API_PORT}/api/v1/leads`, { headers: { 'x-service-key': key } })
    assert.equal(leads.status, 200, `the api takes the service key of .env: ${await leads.clone().text()}`)
    const score = await fetch(`http://127.0.0.1:${ports.ORCHESTRATOR_PORT}/orchestrator/v1/leads/${randomUUID()}/score`, { headers: { 'x-service-key': key } })
    const body = await score.json() as { code: string }
    assert.equal(score.status, 404, `the orchestrator reached the data-service npm start runs, which knows no such lead, with the key of .env: ${JSON.stringify(body)}`)
    assert.equal(body.code, 'LEAD_NOT_FOUND')
  } finally {
    child.kill('SIGINT')
    await exit
  }
  assert.doesNotMatch(output(), new RegExp(key), 'the key reaches no line of the output')
})

test('npm start killed with SIGKILL: the embedded PostgreSQL it started stops once the services have drained, instead of running on', { timeout: 180000 }, async (t) => {
  const dir = join('.data', `test-start-kill-${process.pid}`)
  t.after(() => rmSync(join(projectRoot, dir), { recursive: true, force: true }))
  t.after(() => rmSync(`${join(projectRoot, dir)}.demo-key`, { force: true }))
  const { child, output, exit } = await startReady({ EMBEDDED_PG_DATA_DIR: dir, EMBEDDED_PG_PORT: String(await freePort()) })
  const postmaster = Number(readFileSync(join(projectRoot, dir, 'postmaster.pid'), 'utf8').split('\n')[0])
  assert.ok(postmaster > 0, 'the embedded PostgreSQL runs')
  t.after(() => { try { process.kill(postmaster, 'SIGKILL') } catch { /* stopped */ } })
  child.kill('SIGKILL')
  await exit
  const killed = performance.now()
  const running = (): boolean => ![undefined, 'Z', 'X'].includes(processState(postmaster))
  while (running() && performance.now() - killed < 30000) await sleep(100)
  assert.equal(running(), false, `the embedded PostgreSQL still runs 30 s after npm start was killed:\n${output()}`)
  t.diagnostic(`the embedded PostgreSQL stopped ${Math.round(performance.now() - killed)} ms after npm start was killed`)
  await sleep(200)
  // After the services, which drained with their database there.
  assert.equal(output().match(/shut down cleanly/g)?.length, 3, `each service drained: ${output()}`)
  assert.doesNotMatch(output(), /CHASSIS_SHUTDOWN_INTERRUPTED/)
  // A clean shutdown removes the pid file; one killed outright leaves it.
  assert.throws(() => readFileSync(join(projectRoot, dir, 'postmaster.pid')), /ENOENT/)
})

test('Ctrl-C in the terminal with the embedded PostgreSQL: the database stops after the services have drained, so a request during the drain is still answered from it', { timeout: 180000 }, async (t) => {
  const dir = join('.data', `test-start-ctrl-c-${process.pid}`)
  t.after(() => rmSync(join(projectRoot, dir), { recursive: true, force: true }))
  t.after(() => rmSync(`${join(projectRoot, dir)}.demo-key`, { force: true }))
  const apiPort = await freePort()
  // A drain delay: the services keep answering for a second after the signal, as behind a load balancer.
  const { child, output, exit } = await startReady({ EMBEDDED_PG_DATA_DIR: dir, EMBEDDED_PG_PORT: String(await freePort()), API_PORT: String(apiPort), SHUTDOWN_DELAY_MS: '1000' }, true)
  t.after(() => { try { process.kill(-(child.pid ?? 0), 'SIGKILL') } catch { /* gone */ } })
  const key = /demo API key \([^)]*\): (lck_\S+)/.exec(output())?.[1]
  assert.ok(key, output())
  process.kill(-(child.pid ?? 0), 'SIGINT')
  await sleep(300)
  const during = await fetch(`http://127.0.0.1:${apiPort}/api/v1/leads?limit=1`, { headers: { 'x-api-key': key } })
  assert.equal(during.status, 200, `${await during.text()}\n${output()}`)
  const [code] = await exit
  assert.equal(code, 0, output())
  assert.equal(output().match(/shut down cleanly/g)?.length, 3, output())
  assert.doesNotMatch(output(), /terminating connection due to administrator command/, 'no connection was cut under a draining service')
  assert.match(output(), /embedded PostgreSQL stopped/)
})
