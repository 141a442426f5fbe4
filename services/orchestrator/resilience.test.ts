import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTestSchema, testEnv, uniqueName, SERVICE_HEADERS } from '../../test/helpers/database.js'
import { loadOrchestratorConfig } from './config.js'
import { buildTestDataService, insertAgents, insertLeads, startOrchestrator } from '../../test/helpers/services.js'

test('with the data-service stopped the orchestrator answers 503 with Retry-After within its budget, opens its circuit, and recovers', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { CACHE_PREFIX: `${uniqueName('res')}:` }
  const startData = async (port: number) => {
    const app = await buildTestDataService(db, env)
    return { app, url: await app.listen({ host: '127.0.0.1', port }) }
  }
  let data = await startData(0)
  const port = Number(new URL(data.url).port)
  // No retries: each routing call is one failed call to the data-service, so the threshold is a count of routing calls.
  const { app } = await startOrchestrator(t, db, data.url, { ...env, DATA_SERVICE_TIMEOUT_MS: '500', DATA_SERVICE_RETRIES: '0', DATA_SERVICE_BREAKER_THRESHOLD: '3', DATA_SERVICE_BREAKER_COOLDOWN_MS: '1000' })
  await insertAgents(db, [{ name: 'Solo', capacity: 10 }])
  const leads = await insertLeads(db, 5)
  const route = async (id: string) => {
    const started = performance.now()
    const res = await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${id}/route`, headers: SERVICE_HEADERS })
    return { res, ms: performance.now() - started }
  }
  assert.equal((await route(leads[0] as string)).res.statusCode, 200)

  await data.app.close()
  const down = await route(leads[1] as string)
  assert.equal(down.res.statusCode, 503, down.res.body)
  assert.equal(down.res.json().code, 'UPSTREAM_UNAVAILABLE')
  assert.ok(Number(down.res.headers['retry-after']) >= 1)
  assert.ok(down.ms < 1500, `answered in ${down.ms} ms`)
  // Three failed calls (DATA_SERVICE_BREAKER_THRESHOLD), not the default five, open the circuit.
  for (let i = 0; i < 2; i++) assert.doesNotMatch((await route(leads[1] as string)).res.body, /circuit open/)
  // The circuit is open now: no connection is even tried.
  const open = await route(leads[1] as string)
  assert.equal(open.res.statusCode, 503)
  assert.match(open.res.json().message, /circuit open/)
  assert.ok(open.ms < 100, `open circuit answered in ${open.ms} ms`)

  data = await startData(port)
  t.after(() => data.app.close())
  await sleep(1100)
  const back = await route(leads[1] as string)
  assert.equal(back.res.statusCode, 200, back.res.body)
})

test('a data-service that accepts connections and never answers costs a caller at most its budget', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const sockets: Socket[] = []
  const hung = createServer((s) => { sockets.push(s) })
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); hung.close() })
  const address = hung.address() as { port: number }
  const { app } = await startOrchestrator(t, db, `http://127.0.0.1:${address.port}`, { CACHE_PREFIX: `${uniqueName('res')}:`, DATA_SERVICE_TIMEOUT_MS: '300', DATA_SERVICE_RETRIES: '1' })
  const started = performance.now()
  const res = await app.inject({ method: 'GET', url: '/orchestrator/v1/leads/00000000-0000-4000-8000-000000000000/score', headers: SERVICE_HEADERS })
  const ms = performance.now() - started
  assert.equal(res.statusCode, 503)
  assert.match(res.json().message, /no answer within 300 ms/)
  // The budget of the whole call, its retry included: a retry may not start once it is spent.
  assert.ok(ms < 300 + 250, `answered in ${ms} ms`)
  // A budget the shutdown could not wait out is refused at start.
  const tooLong: Array<Record<string, string>> = [{ DATA_SERVICE_TIMEOUT_MS: '10000' }, { DATA_SERVICE_TIMEOUT_MS: '5000', SHUTDOWN_TIMEOUT_MS: '4000' }]
  for (const env of tooLong) {
    assert.throws(() => loadOrchestratorConfig({ dotenv: false, env: testEnv(db, env) }), /DATA_SERVICE_TIMEOUT_MS must be less than SHUTDOWN_TIMEOUT_MS/)
  }
  assert.equal(loadOrchestratorConfig({ dotenv: false, env: testEnv(db, { DATA_SERVICE_TIMEOUT_MS: '9999' }) }).DATA_SERVICE_TIMEOUT_MS, 9999)
})

test('a routing call (not idempotent) is never retried', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  let calls = 0
  const { createServer: httpServer } = await import('node:http')
  const flaky = httpServer((_req, res) => { calls++; res.writeHead(503).end() })
  await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve))
  t.after(() => { flaky.close() })
  const { createServiceClient } = await import('@lead-chassis/plugins/http-client')
  const client = createServiceClient({ name: 'flaky', baseUrl: `http://127.0.0.1:${(flaky.address() as { port: number }).port}`, retries: 3, retryBaseMs: 1 })
  t.after(() => client.close())
  await assert.rejects(client.request({ method: 'POST', path: '/x', body: {} }), { code: 'UPSTREAM_UNAVAILABLE' })
  assert.equal(calls, 1)
  await assert.rejects(client.request({ path: '/x' }), { code: 'UPSTREAM_UNAVAILABLE' })
  assert.equal(calls, 1 + 4, 'a GET is retried')
})

test('with the default retries and threshold, a stopped data-service opens the circuit during the second call, and the third is refused without a connection', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // A port nothing listens on: every attempt is refused at once.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as { port: number }).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const { app } = await startOrchestrator(t, db, `http://127.0.0.1:${port}`, { CACHE_PREFIX: `${uniqueName('res')}:` })
  const score = () => app.inject({ url: '/orchestrator/v1/leads/00000000-0000-4000-8000-000000000000/score', headers: SERVICE_HEADERS })
  const first = await score()
  assert.equal(first.statusCode, 503)
  assert.match(first.json().message, /request failed \(ECONNREFUSED\)/, 'three attempts, three failures: under the threshold of five')
  const second = await score()
  assert.match(second.json().message, /circuit open/, 'its fourth and fifth attempts open the circuit, the sixth is refused')
  const started = performance.now()
  const third = await score()
  assert.match(third.json().message, /circuit open/)
  assert.ok(performance.now() - started < 100)
})
