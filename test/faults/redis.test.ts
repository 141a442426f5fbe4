import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { createTestSchema, SERVICE_HEADERS, testApiConfig, type TestSchema } from '../helpers/database.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { startPrivateRedis } from '../helpers/private-redis.js'
import { eventually } from '../helpers/eventually.js'
import { startLeadLoad, tally, touched, worstWait, type LeadLoad } from '../helpers/lead-load.js'

type TestContext = { after: (fn: () => Promise<void>) => void, diagnostic: (message: string) => void }

const COMMAND_TIMEOUT_MS = 100
const ACK_TIMEOUT_MS = 200
const FAULT_MS = 4000
/**
 * The stated budget of a request while Redis does not answer: the limiter's check and the cache's read each cost at
 * most REDIS_COMMAND_TIMEOUT_MS (then their breakers open and cost nothing), a write waits at most
 * CACHE_ACK_TIMEOUT_MS for the other instances; plus a busy machine's lag and the request's own PostgreSQL work.
 * Half the fault's length: a request that waited for Redis to come back would be past it.
 */
const BUDGET_MS = 2 * COMMAND_TIMEOUT_MS + ACK_TIMEOUT_MS + 1600

/** The api with its cache and rate limiter on a Redis of the test's own behind a fault proxy; PostgreSQL direct. */
async function apiWithRedisBehindProxy (t: TestContext): Promise<{ db: TestSchema, proxy: FaultProxy, app: FastifyInstance }> {
  const db = await createTestSchema()
  const redis = await startPrivateRedis()
  const proxy = await startFaultProxy({ port: redis.port })
  const app = await buildApp(testApiConfig(db, {
    REDIS_URL: proxy.rewrite(redis.url),
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
    CACHE_ENABLED: 'true',
    CACHE_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS),
    CACHE_BREAKER_COOLDOWN_MS: '500',
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_MAX_REQUESTS: '1000000',
    DB_POOL_MAX: '10'
  }))
  t.after(async () => {
    proxy.heal()
    await app.close()
    await proxy.close()
    await redis.destroy()
    await db.drop()
  })
  return { db, proxy, app }
}

/**
 * Redis used again by itself: both breakers closed, the cache connected, the limiter deciding from Redis. A breaker
 * probes on the next call that needs Redis (entries still fresh in the local tier need none), so the probes are
 * reads of leads not cached yet and valid creations, which the limiter counts and whose invalidations reach Redis.
 */
async function assertRedisBackInUse (app: FastifyInstance, ids: string[]): Promise<void> {
  const fallbacks = (): number => Object.values(app.rateLimiter.getStats().policies).reduce((n, p) => n + p.fallback, 0)
  let probe = 0
  const state = (): string => JSON.stringify({ cache: app.cache.getStats().redis, limiter: app.rateLimiter.getStats().breaker, redis: app.redis?.status })
  try {
    await eventually(async () => {
      const before = fallbacks()
      for (let i = 0; i < 5; i++, probe++) {
        await app.inject({ url: `/api/v1/leads/${ids[probe % ids.length] ?? ''}`, headers: SERVICE_HEADERS })
        await app.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Probe', lastName: `N${probe}`, email: `probe.${process.pid}.${probe}@example.com`, product: 'auto', state: 'CA' } })
      }
      const cache = app.cache.getStats().redis
      return cache.breaker === 'closed' && cache.connected && app.rateLimiter.getStats().breaker === 'closed' && fallbacks() === before
    }, 'the cache and the limiter use Redis again', 15_000)
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${state()}`, { cause: error })
  }
}

/** Every lead answered 201 is in the table and is served (never a stale 404 from the cache). */
async function assertNoWriteLost (app: FastifyInstance, db: TestSchema, load: LeadLoad): Promise<void> {
  const [found] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE id = ANY($1::uuid[])', [load.acknowledged])
  assert.equal(found?.n, load.acknowledged.length, 'every lead answered 201 is in the table')
  for (const id of load.acknowledged.slice(-50)) {
    assert.equal((await app.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })).statusCode, 200)
  }
}

async function faultUnderLoad (t: TestContext, name: string, fault: (proxy: FaultProxy) => void): Promise<void> {
  const { db, proxy, app } = await apiWithRedisBehindProxy(t)
  const load = startLeadLoad(app, 20)
  await eventually(() => load.answers.length >= 100, 'the load is running', 15_000)
  const faultAt = load.setPhase('fault')
  fault(proxy)
  await sleep(FAULT_MS)
  proxy.heal()
  proxy.latency(0)
  load.setPhase('after')
  await eventually(() => load.answers.filter((a) => a.phase === 'after').length >= 100, 'requests answered after the fault', 15_000)
  await load.stop()

  const during = tally(touched(load.answers, 'fault'))
  const worst = worstWait(load.answers, 'fault', faultAt)
  const before = Math.max(...load.answers.filter((a) => a.answeredIn === 'before').map((a) => a.ms))
  t.diagnostic(`${name}: worst wait ${worst.toFixed(0)} ms (slowest answer before the fault ${before.toFixed(0)} ms, budget ${BUDGET_MS} ms); answers ${JSON.stringify(during)}`)
  assert.deepEqual(Object.keys(during).filter((k) => !k.startsWith('2')), [], 'with Redis gone the api degrades, it does not fail')
  assert.ok(worst <= BUDGET_MS, `worst wait ${worst.toFixed(0)} ms`)
  assert.deepEqual(Object.keys(tally(load.answers.filter((a) => a.phase === 'after'))).filter((k) => !k.startsWith('2')), [])
  await assertRedisBackInUse(app, load.acknowledged)
  await assertNoWriteLost(app, db, load)
}

test('a blackholed link to Redis: cache and rate limiter fall back within their budget under 20 in-flight requests, then use Redis again', async (t) => {
  await faultUnderLoad(t, 'blackhole', (p) => p.blackhole())
})

test('a paused link to Redis: requests still answer within the budget, and Redis is used again once it resumes', async (t) => {
  await faultUnderLoad(t, 'pause', (p) => p.pause())
})

test('a reset link to Redis: connections refused and reset, no crash, the client reconnects by itself', async (t) => {
  await faultUnderLoad(t, 'reset', (p) => p.reset())
})

test('latency on the link to Redis above the command budget: answers stay within the budget', async (t) => {
  await faultUnderLoad(t, 'latency', (p) => p.latency(3 * COMMAND_TIMEOUT_MS))
})
