import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { CLIENT_TIMEOUT_MARGIN_MS } from '@lead-chassis/plugins/db-pool'
import { createTestSchema, SERVICE_HEADERS, testApiConfig, type TestSchema } from '../helpers/database.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { startPrivateRedis } from '../helpers/private-redis.js'
import { eventually } from '../helpers/eventually.js'
import { startLeadLoad, tally, touched, worstWait, type Answer, type LeadLoad } from '../helpers/lead-load.js'

// The faults of docs/faults.md, each in a shape test/faults/postgres.test.ts and redis.test.ts do not take: one
// direction only, healing before the timeout, both stores at once, a burst of 200, longer than every timeout.

type TestContext = { after: (fn: () => Promise<void>) => void, diagnostic: (message: string) => void }

const QUERY_TIMEOUT_MS = 1000
const PG_BOUND_MS = QUERY_TIMEOUT_MS + CLIENT_TIMEOUT_MARGIN_MS
const COMMAND_TIMEOUT_MS = 100
const ACK_TIMEOUT_MS = 200
/** What Redis may add to a request: the limiter's check, the cache's read, a write's wait for acknowledgements. */
const REDIS_BUDGET_MS = 2 * COMMAND_TIMEOUT_MS + ACK_TIMEOUT_MS
/** A busy 2-core machine's lag and the request's own work, as in postgres.test.ts. */
const SLACK_MS = 1500
const POOL_MIN = 2
const POOL_MAX = 10

interface Rig {
  db: TestSchema
  app: FastifyInstance
  pg: FaultProxy | undefined
  redis: FaultProxy | undefined
  /** Connections to Redis before the fault. */
  redisLinks?: number | undefined
}

/** The api with PostgreSQL and/or its own Redis behind fault proxies. */
async function rig (t: TestContext, links: { pg?: boolean, redis?: boolean }, queryTimeoutMs = QUERY_TIMEOUT_MS): Promise<Rig> {
  const db = await createTestSchema()
  const pg = links.pg === true ? await startFaultProxy({ port: Number(new URL(db.url).port || 5432) }) : undefined
  const server = links.redis === true ? await startPrivateRedis() : undefined
  const redis = server ? await startFaultProxy({ port: server.port }) : undefined
  const app = await buildApp(testApiConfig(db, {
    ...(pg ? { DATABASE_URL: pg.rewrite(db.url) } : {}),
    DB_POOL_MIN: String(POOL_MIN),
    DB_POOL_MAX: String(POOL_MAX),
    DB_QUERY_TIMEOUT: String(queryTimeoutMs),
    DB_CONNECTION_TIMEOUT: '10000',
    ...(redis && server
      ? {
          REDIS_URL: redis.rewrite(server.url),
          REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
          CACHE_ENABLED: 'true',
          CACHE_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS),
          CACHE_BREAKER_COOLDOWN_MS: '500',
          RATE_LIMIT_ENABLED: 'true',
          RATE_LIMIT_MAX_REQUESTS: '1000000'
        }
      : { CACHE_ENABLED: 'false' })
  }))
  t.after(async () => {
    pg?.heal()
    redis?.heal()
    await app.close()
    await pg?.close()
    await redis?.close()
    await server?.destroy()
    await db.drop()
  })
  return { db, app, pg, redis }
}

/**
 * Runs `concurrency` workers, applies `fault` for `ms`, heals, waits for 2xx again. With `steady`, the load first
 * runs as long again without the fault, and `steadyWorst` is that window's worst wait, measured as the fault's is:
 * the baseline a fault's added wait is read against is the same load at its steady state, not its first wave.
 */
async function faultUnderLoad (r: Rig, concurrency: number, fault: () => void, ms: number, steady = false): Promise<{ load: LeadLoad, faultAt: number, worst: number, steadyWorst: number, during: Record<string, number> }> {
  const load = startLeadLoad(r.app, concurrency)
  await eventually(() => load.answers.filter((a) => a.status < 300).length >= 100, 'the load is running', 15_000)
  let steadyWorst = 0
  if (steady) {
    const steadyAt = load.setPhase('steady')
    await sleep(ms)
    steadyWorst = worstWait(load.answers, 'steady', steadyAt)
  }
  r.redisLinks = r.redis?.connections()
  const faultAt = load.setPhase('fault')
  fault()
  await sleep(ms)
  r.pg?.heal()
  r.redis?.heal()
  load.setPhase('after')
  await eventually(() => load.answers.filter((a) => a.phase === 'after' && a.status < 300).length >= 100, 'the api answers 2xx after the fault', 20_000)
  await load.stop()
  return { load, faultAt, worst: worstWait(load.answers, 'fault', faultAt), steadyWorst, during: tally(touched(load.answers, 'fault')) }
}

function assertOnly (answers: Answer[], allowed: RegExp): void {
  for (const a of answers) {
    if (a.status < 300) continue
    assert.match(`${a.status} ${a.code ?? ''}`, allowed, `${a.method} answered ${a.status} ${a.code ?? ''}`)
    assert.ok(a.retryAfter !== undefined && Number(a.retryAfter) >= 1, 'a 503 carries Retry-After')
  }
}

/** The pool back to its minimum with nothing stuck, every acknowledged lead stored once, 2xx only after the fault. */
async function assertRecovered (r: Rig, load: LeadLoad): Promise<void> {
  let last = r.app.db.getMetrics()
  await eventually(() => {
    last = r.app.db.getMetrics()
    return last.activeConnections === 0 && last.waitingRequests === 0 && last.totalConnections >= POOL_MIN
  }, 'no connection is left active and nobody waits', 15_000).catch((error: Error) => { throw new Error(`${error.message}; the pool: ${JSON.stringify(last)}`) })
  assert.ok(last.totalConnections <= POOL_MAX, `the pool holds ${last.totalConnections} connections, more than its max`)
  if (r.pg) assert.ok(r.pg.connections() <= POOL_MAX + 1, `${r.pg.connections()} connections through the PostgreSQL proxy (pool max ${POOL_MAX} plus the LISTEN one)`)
  const [found] = await r.db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE id = ANY($1::uuid[])', [load.acknowledged])
  assert.equal(found?.n, load.acknowledged.length, 'every lead answered 201 is in the table')
  const [all] = await r.db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.ok((all?.n ?? 0) <= load.attempted(), 'no lead was written twice')
  assert.deepEqual(Object.keys(tally(load.answers.filter((a) => a.phase === 'after'))).filter((k) => !k.startsWith('2')), [], 'after the fault every answer is 2xx')
}

/** Both breakers closed and the limiter deciding from Redis again, probed with fresh reads and creations. */
async function assertRedisBackInUse (app: FastifyInstance): Promise<void> {
  const fallbacks = (): number => Object.values(app.rateLimiter.getStats().policies).reduce((n, p) => n + p.fallback, 0)
  let probe = 0
  await eventually(async () => {
    const before = fallbacks()
    for (let i = 0; i < 5; i++, probe++) {
      await app.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Probe', lastName: `N${probe}`, email: `probe.${process.pid}.${probe}@example.com`, product: 'auto', state: 'CA' } })
      await app.inject({ url: `/api/v1/leads?limit=${1 + (probe % 50)}`, headers: SERVICE_HEADERS })
    }
    const cache = app.cache.getStats().redis
    return cache.breaker === 'closed' && cache.connected && app.rateLimiter.getStats().breaker === 'closed' && fallbacks() === before
  }, 'the cache and the limiter use Redis again', 15_000)
  await eventually(() => app.cache.getStats().invalidations.pending === 0, 'no invalidation left pending', 10_000)
}

/** Reconnections replaced the connections to Redis, they did not add to them. */
async function assertNoRedisLinkLeak (r: Rig): Promise<void> {
  const before = r.redisLinks ?? 0
  await eventually(() => (r.redis?.connections() ?? 0) <= before, `back to the ${before} connections to Redis open before the fault`, 10_000)
    .catch((error: Error) => { throw new Error(`${error.message}: ${r.redis?.connections() ?? 0} open`) })
}

test('a half-open link to PostgreSQL (answers dropped, queries delivered and run) mid-load: 503 within the bound, no acknowledged write lost, the pool recovers', async (t) => {
  const r = await rig(t, { pg: true })
  const { load, worst, during } = await faultUnderLoad(r, 50, () => r.pg?.blackhole('down'), 3000)
  t.diagnostic(`half-open PostgreSQL: worst wait ${worst.toFixed(0)} ms (bound ${PG_BOUND_MS} ms); answers ${JSON.stringify(during)}`)
  assert.ok((during['503 DB_UNAVAILABLE'] ?? 0) + (during['503 DB_COMMIT_OUTCOME_UNKNOWN'] ?? 0) >= 25, `the fault was felt: ${JSON.stringify(during)}`)
  assert.ok(worst <= PG_BOUND_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms`)
  assertOnly(load.answers, /^503 DB_(UNAVAILABLE|COMMIT_OUTCOME_UNKNOWN)$/)
  await assertRecovered(r, load)
})

test('a PostgreSQL blackhole that heals before DB_QUERY_TIMEOUT costs no request an error', async (t) => {
  const r = await rig(t, { pg: true })
  const { load, worst, during } = await faultUnderLoad(r, 50, () => r.pg?.blackhole(), QUERY_TIMEOUT_MS / 4)
  t.diagnostic(`a ${QUERY_TIMEOUT_MS / 4} ms blackhole: worst wait ${worst.toFixed(0)} ms; answers ${JSON.stringify(during)}`)
  assert.deepEqual(Object.keys(during).filter((k) => !k.startsWith('2')), [], 'a blip shorter than the timeout fails nothing')
  await assertRecovered(r, load)
})

test('Redis and PostgreSQL blackholed at once under 50 in-flight requests: 503 DB_UNAVAILABLE within the PostgreSQL bound plus the Redis budget, then both used again', async (t) => {
  const r = await rig(t, { pg: true, redis: true })
  const { load, worst, during } = await faultUnderLoad(r, 50, () => { r.redis?.blackhole(); r.pg?.blackhole() }, 4000)
  t.diagnostic(`both blackholed: worst wait ${worst.toFixed(0)} ms (bound ${PG_BOUND_MS} + ${REDIS_BUDGET_MS} ms); answers ${JSON.stringify(during)}`)
  assert.ok((during['503 DB_UNAVAILABLE'] ?? 0) >= 25, `the fault was felt: ${JSON.stringify(during)}`)
  assert.ok(worst <= PG_BOUND_MS + REDIS_BUDGET_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms`)
  assertOnly(load.answers, /^503 DB_(UNAVAILABLE|COMMIT_OUTCOME_UNKNOWN)$/)
  await assertRecovered(r, load)
  await assertRedisBackInUse(r.app)
  await assertNoRedisLinkLeak(r)
})

test('a Redis blackhole during a burst of 200 concurrent requests: every answer 2xx, none slower than before the fault by more than the budget', async (t) => {
  // 200 in flight queue for 10 connections: with a 1 s DB_QUERY_TIMEOUT that wait alone would answer 503.
  const r = await rig(t, { redis: true }, 15_000)
  const { load, worst, steadyWorst, during } = await faultUnderLoad(r, 200, () => r.redis?.blackhole(), 3000, true)
  const steady = tally(touched(load.answers, 'steady'))
  t.diagnostic(`Redis blackhole, 200 in flight: worst wait ${worst.toFixed(0)} ms (the 3 s before it without the fault: ${steadyWorst.toFixed(0)} ms); answers ${JSON.stringify(during)}; before it ${JSON.stringify(steady)}`)
  assert.deepEqual(Object.keys(steady).filter((k) => !k.startsWith('2')), [], 'the load runs clean before the fault')
  assert.deepEqual(Object.keys(during).filter((k) => !k.startsWith('2')), [], 'with Redis gone the api degrades, it does not fail')
  assert.ok(worst <= steadyWorst + REDIS_BUDGET_MS + SLACK_MS, `worst wait ${worst.toFixed(0)} ms, ${steadyWorst.toFixed(0)} ms in the 3 s before the fault`)
  await assertRecovered(r, load)
  await assertRedisBackInUse(r.app)
  await assertNoRedisLinkLeak(r)
})

test('a half-open link to Redis (commands run, answers dropped) for 11 s, longer than the client backstop: 2xx within the budget, then Redis used again', async (t) => {
  const r = await rig(t, { redis: true })
  const { load, worst, during } = await faultUnderLoad(r, 20, () => r.redis?.blackhole('down'), 11_000)
  t.diagnostic(`half-open Redis for 11 s: worst wait ${worst.toFixed(0)} ms; answers ${JSON.stringify(during)}`)
  assert.deepEqual(Object.keys(during).filter((k) => !k.startsWith('2')), [], 'with Redis mute the api degrades, it does not fail')
  assert.ok(worst <= REDIS_BUDGET_MS + SLACK_MS + 400, `worst wait ${worst.toFixed(0)} ms`)
  await assertRecovered(r, load)
  await assertRedisBackInUse(r.app)
  await assertNoRedisLinkLeak(r)
})
