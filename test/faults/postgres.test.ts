import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { CLIENT_TIMEOUT_MARGIN_MS } from '@lead-chassis/plugins/db-pool'
import { SERVICE_HEADERS, TEST_DATABASE_URL, createTestSchema, testApiConfig, type TestSchema } from '../helpers/database.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { eventually } from '../helpers/eventually.js'
import { startLeadLoad, tally, touched, worstWait, type Answer, type LeadLoad } from '../helpers/lead-load.js'

type TestContext = { after: (fn: () => Promise<void>) => void, diagnostic: (message: string) => void }

const QUERY_TIMEOUT_MS = 1000
const POOL_MIN = 2
/** The promise: an answer within DB_QUERY_TIMEOUT plus the client-side margin. */
const BOUND_MS = QUERY_TIMEOUT_MS + CLIENT_TIMEOUT_MARGIN_MS
// What a request spends before the fault hits it (waiting its turn among 50, earlier statements of its transaction)
// and event-loop lag on a busy 2-core machine. Bound plus slack stays well under the fault's length, so a request
// that waited for the link to come back fails the test.
const SLACK_MS = 1500
const FAULT_MS = 4500

/** The api with its pool pointed at PostgreSQL through a fault proxy; DB_CONNECTION_TIMEOUT longer than the bound. */
async function apiBehindProxy (t: TestContext, env: Record<string, string> = {}): Promise<{ db: TestSchema, proxy: FaultProxy, app: FastifyInstance }> {
  const db = await createTestSchema()
  const proxy = await startFaultProxy({ port: Number(new URL(db.url).port || 5432) })
  const app = await buildApp(testApiConfig(db, {
    DATABASE_URL: proxy.rewrite(db.url),
    DB_POOL_MIN: String(POOL_MIN),
    DB_POOL_MAX: '10',
    DB_QUERY_TIMEOUT: String(QUERY_TIMEOUT_MS),
    DB_CONNECTION_TIMEOUT: '10000',
    CACHE_ENABLED: 'false',
    ...env
  }))
  t.after(async () => {
    proxy.heal()
    await app.close()
    await proxy.close()
    await db.drop()
  })
  return { db, proxy, app }
}

/** Runs the lead load, applies `fault` for `ms`, heals, and returns once the api has answered 2xx again for a while. */
async function underLoad (app: FastifyInstance, proxy: FaultProxy, fault: (proxy: FaultProxy) => void, ms: number): Promise<{ load: LeadLoad, worst: number }> {
  const load = startLeadLoad(app, 50)
  await eventually(() => load.answers.length >= 100, 'the load is running', 15_000)
  const faultAt = load.setPhase('fault')
  fault(proxy)
  await sleep(ms)
  proxy.heal()
  proxy.latency(0)
  load.setPhase('after')
  await eventually(() => load.answers.filter((a) => a.phase === 'after' && a.status < 300).length >= 100, 'the api answers 2xx after the fault', 30000)
  await load.stop()
  return { load, worst: worstWait(load.answers, 'fault', faultAt) }
}

/** Every failure is a 503 with a database code and Retry-After; nothing else (no 500, no hang). */
function assertOnlyDatabase503s (answers: Answer[]): void {
  for (const a of answers) {
    if (a.status < 300) continue
    assert.equal(a.status, 503, `${a.method} answered ${a.status} ${a.code ?? ''}`)
    assert.match(a.code ?? '', /^DB_(UNAVAILABLE|COMMIT_OUTCOME_UNKNOWN)$/)
    assert.ok(a.retryAfter !== undefined && Number(a.retryAfter) >= 1, 'a 503 carries Retry-After')
  }
}

/** After the fault: no connection stuck, the pool at its minimum or above by itself, no acknowledged write lost. */
async function assertRecovered (app: FastifyInstance, db: TestSchema, load: LeadLoad): Promise<void> {
  let last = app.db.getMetrics()
  await eventually(() => {
    last = app.db.getMetrics()
    return last.activeConnections === 0 && last.waitingRequests === 0 && last.totalConnections >= POOL_MIN
  }, 'no connection is left active and nobody waits', 15_000).catch((error: Error) => { throw new Error(`${error.message}; the pool: ${JSON.stringify(last)}`) })
  const [found] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE id = ANY($1::uuid[])', [load.acknowledged])
  assert.equal(found?.n, load.acknowledged.length, 'every lead answered 201 is in the table')
  const [all] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.ok((all?.n ?? 0) <= load.attempted(), 'no lead was written twice')
  assert.deepEqual(Object.keys(tally(load.answers.filter((a) => a.phase === 'after'))).filter((k) => !k.startsWith('2')), [], 'after the fault every answer is 2xx')
}

test('a blackholed link to PostgreSQL: each of 50 in-flight requests gets 503 DB_UNAVAILABLE within DB_QUERY_TIMEOUT plus the margin, and the pool recovers by itself', async (t) => {
  const { db, proxy, app } = await apiBehindProxy(t)
  const { load, worst } = await underLoad(app, proxy, (p) => p.blackhole(), FAULT_MS)
  const during = tally(touched(load.answers, 'fault'))
  t.diagnostic(`blackhole: worst wait ${worst.toFixed(0)} ms (bound ${BOUND_MS} ms); answers ${JSON.stringify(during)}`)
  assert.ok((during['503 DB_UNAVAILABLE'] ?? 0) >= 25, `the blackhole was felt: ${JSON.stringify(during)}`)
  assert.ok(worst <= BOUND_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms`)
  assertOnlyDatabase503s(load.answers)
  await assertRecovered(app, db, load)
})

test('a paused link to PostgreSQL (backpressure): requests get 503 within the bound instead of waiting for the link', async (t) => {
  const { db, proxy, app } = await apiBehindProxy(t)
  const { load, worst } = await underLoad(app, proxy, (p) => p.pause(), FAULT_MS)
  const during = tally(touched(load.answers, 'fault'))
  t.diagnostic(`pause: worst wait ${worst.toFixed(0)} ms (bound ${BOUND_MS} ms); answers ${JSON.stringify(during)}`)
  assert.ok((during['503 DB_UNAVAILABLE'] ?? 0) >= 25, `the pause was felt: ${JSON.stringify(during)}`)
  assert.ok(worst <= BOUND_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms`)
  assertOnlyDatabase503s(load.answers)
  await assertRecovered(app, db, load)
})

test('a reset link to PostgreSQL: requests fail fast with 503, connections are replaced, no acknowledged write is lost', async (t) => {
  const { db, proxy, app } = await apiBehindProxy(t)
  const { load, worst } = await underLoad(app, proxy, (p) => p.reset(), 1000)
  const during = tally(touched(load.answers, 'fault'))
  t.diagnostic(`reset: worst wait ${worst.toFixed(0)} ms; answers ${JSON.stringify(during)}`)
  assert.ok((during['503 DB_UNAVAILABLE'] ?? 0) >= 1, `the reset was felt: ${JSON.stringify(during)}`)
  assert.ok(worst <= BOUND_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms`)
  assertOnlyDatabase503s(load.answers)
  await assertRecovered(app, db, load)
})

test('latency on the link to PostgreSQL: below the bound nothing fails; above it, 503 within the bound, then recovery', async (t) => {
  const { db, proxy, app } = await apiBehindProxy(t)
  const load = startLeadLoad(app, 50)
  await eventually(() => load.answers.length >= 100, 'the load is running', 15_000)
  load.setPhase('slow')
  proxy.latency(20)
  await eventually(() => load.answers.filter((a) => a.phase === 'slow').length >= 200, 'requests ran over the slow link', 15_000)
  const tooSlowAt = load.setPhase('too-slow')
  proxy.latency(2 * BOUND_MS)
  await sleep(FAULT_MS)
  proxy.latency(0)
  load.setPhase('after')
  await eventually(() => load.answers.filter((a) => a.phase === 'after' && a.status < 300).length >= 100, 'the api answers 2xx after the fault', 30000)
  await load.stop()

  // Requests asked over the slow link and answered after the switch paid the long latency: judged with that phase.
  const slow = tally(load.answers.filter((a) => a.phase === 'slow' && a.answeredIn === 'slow'))
  const tooSlow = tally(touched(load.answers, 'too-slow'))
  t.diagnostic(`latency 20 ms: ${JSON.stringify(slow)}; latency ${2 * BOUND_MS} ms: worst wait ${worstWait(load.answers, 'too-slow', tooSlowAt).toFixed(0)} ms, ${JSON.stringify(tooSlow)}`)
  assert.deepEqual(Object.keys(slow).filter((k) => !k.startsWith('2')), [], 'a slower link below the bound costs no request')
  assert.ok((tooSlow['503 DB_UNAVAILABLE'] ?? 0) >= 25, `latency above the bound was felt: ${JSON.stringify(tooSlow)}`)
  assert.ok(worstWait(load.answers, 'too-slow', tooSlowAt) <= BOUND_MS + SLACK_MS, `worst wait ${worstWait(load.answers, 'too-slow', tooSlowAt).toFixed(0)} ms`)
  assertOnlyDatabase503s(load.answers)
  await assertRecovered(app, db, load)
})

test('with read replicas configured, a write PostgreSQL cannot answer gets its 503 within the bound, not after a second one spent asking the primary for the position to send back', async (t) => {
  // The replica list names the same server, reached without the proxy: only the write's answer is looked at here.
  const { app, proxy } = await apiBehindProxy(t, { DATABASE_REPLICA_URLS: TEST_DATABASE_URL })
  const create = async (i: number): Promise<{ status: number, code?: string, ms: number }> => {
    const started = performance.now()
    const res = await app.inject({ method: 'POST', url: '/api/v1/leads', headers: SERVICE_HEADERS, payload: { firstName: 'Ann', lastName: 'Lee', email: `ann.${i}@example.com`, product: 'auto', state: 'CA' } })
    return { status: res.statusCode, code: (res.json() as { code?: string }).code, ms: performance.now() - started }
  }
  assert.equal((await create(0)).status, 201)
  proxy.blackhole()
  const failed = await create(1)
  t.diagnostic(`answered ${failed.status} ${failed.code ?? ''} after ${Math.round(failed.ms)} ms (bound ${BOUND_MS} ms)`)
  assert.deepEqual([failed.status, failed.code], [503, 'DB_UNAVAILABLE'])
  // Before, about twice the bound: the answer asked the blackholed primary for its WAL position too.
  assert.ok(failed.ms < BOUND_MS + 1000, `answered after ${Math.round(failed.ms)} ms`)
})
