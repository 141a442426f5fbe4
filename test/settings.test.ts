import { test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import WebSocket from 'ws'
import { projectRoot } from '../services/platform/paths.js'
import { buildApp } from '../services/api/app.js'
import { isCluster } from '@lead-chassis/plugins/redis'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, testApiConfig, testEnv, uniqueName, type TestSchema } from './helpers/database.js'
import { loadOrchestratorConfig } from '../services/orchestrator/config.js'
import { eventually } from './helpers/eventually.js'
import { freePort } from './helpers/ports.js'
import { startPrivateRedis } from './helpers/private-redis.js'
import { startOtlpReceiver, startTracedService, type ReceivedSpan } from './helpers/otlp.js'
import { startDataService, startOrchestrator } from './helpers/services.js'

/**
 * Every variable of the configuration table (docs/configuration.md), and how a test sees it change something:
 * - `run`: the case below sets a non-default value and observes the effect (a boolean switch both ways);
 * - `testedBy`: a test elsewhere does, and its body names the variable;
 * - `unobservable`: why no test can, which docs/configuration.md says too.
 * A new variable gets one entry here; the first test fails until it has one.
 */
type Setting =
  | { test: string, run: (t: TestContext) => Promise<void> }
  | { testedBy: { file: string, test: string } }
  | { unobservable: string }

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let leadId: string

before(async () => {
  db = await createTestSchema()
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('Ann', 'Lee', 'ann.settings@example.com', 'auto', 'CA') RETURNING id")
  leadId = lead?.id as string
})

after(async () => { await db?.drop() })

async function api (t: TestContext, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('set')}:`, RATE_LIMIT_PREFIX: `${uniqueName('setrl')}:`, ...env }))
  t.after(() => app.close())
  return app
}

function blockEventLoop (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* busy on purpose: load shedding must see it */ }
}

async function redisKeys (pattern: string): Promise<string[]> {
  const redis = new Redis(REDIS_URL)
  try {
    return await redis.keys(pattern)
  } finally {
    redis.disconnect()
  }
}

/** The api as production starts it, in a child process with only the given environment. */
function startApiProcess (t: TestContext, env: Record<string, string>): { exit: Promise<number | null>, signal: (s: NodeJS.Signals) => void } {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'services', 'api', 'main.js')], {
    cwd: tmpdir(),
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema, DB_POOL_MIN: '1', DB_POOL_MAX: '2', LOG_LEVEL: 'warn', SERVICE_API_KEY: TEST_SERVICE_KEY, ...env },
    stdio: 'ignore'
  })
  t.after(() => { child.kill('SIGKILL') })
  return { exit: once(child, 'exit').then(([code]) => code as number | null), signal: (s) => child.kill(s) }
}

async function ready (url: string): Promise<boolean> {
  return fetch(url).then((r) => r.ok, () => false)
}

async function hostAndPort (t: TestContext): Promise<void> {
  const port = await freePort()
  startApiProcess(t, { HOST: '127.0.0.2', PORT: String(port) })
  await eventually(() => ready(`http://127.0.0.2:${port}/health/live`), 'the api answers on 127.0.0.2')
  assert.equal(await ready(`http://127.0.0.1:${port}/health/live`), false, 'nothing listens on the default address')
}

/** An HTTP server answering every request with `status`, recording the paths asked for. */
async function recordingServer (t: TestContext, status: number): Promise<{ url: string, paths: string[] }> {
  const paths: string[] = []
  const server = createServer((req, res) => { paths.push(req.url ?? ''); res.writeHead(status, { 'content-type': 'application/json' }).end('{}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, paths }
}

/** A lead as the data-service answers it. */
function leadAnswer (id: string): Record<string, unknown> {
  const at = new Date().toISOString()
  return { id, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', phone: null, product: 'auto', state: 'CA', status: 'new', score: 0, source: 'web', createdAt: at, updatedAt: at }
}

async function cacheSource (app: FastifyInstance, key: string, value = 'v'): Promise<string> {
  return (await app.cache.getOrSetWithSource(key, async () => value)).source
}

const settings: Record<string, Setting> = {
  NODE_ENV: { unobservable: 'no code of the services reads it; it is accepted because the container image and npm set it' },
  HOST: { test: 'HOST=127.0.0.2 makes the api listen there and not on 127.0.0.1', run: hostAndPort },
  PORT: { test: 'PORT makes the api listen on that port', run: hostAndPort },
  TRUST_PROXY: { testedBy: { file: 'plugins/rate-limit/plugin.test.ts', test: 'a forged X-Forwarded-For from an untrusted peer buys no new quota; a trusted proxy passes the client on' } },
  LOG_HOSTS: { testedBy: { file: 'plugins/chassis/log-redaction.test.ts', test: 'LOG_HOSTS shows the host names it lists as sent in a request line; any other the caller sends is [REDACTED]' } },
  LOG_REQUESTS: { testedBy: { file: 'plugins/chassis/request-lines.test.ts', test: 'LOG_REQUESTS=received-and-answered writes a line when a request arrives, with the request, and one when it is answered, with its status' } },
  LOG_LEVEL: {
    test: 'LOG_LEVEL sets the level the service logs at',
    run: async (t) => {
      assert.equal((await api(t, { LOG_LEVEL: 'debug' })).log.level, 'debug')
      assert.equal((await api(t, { LOG_LEVEL: 'error' })).log.level, 'error')
    }
  },
  BODY_LIMIT_BYTES: {
    test: 'BODY_LIMIT_BYTES=2048 answers 413 to a larger body on a route without its own limit',
    run: async (t) => {
      const orchestrator = (await startOrchestrator(t, db, 'http://127.0.0.1:9', { BODY_LIMIT_BYTES: '2048' })).app
      const body = JSON.stringify({ limit: 1, padding: 'x'.repeat(3000) })
      const res = await orchestrator.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: { ...SERVICE_HEADERS, 'content-type': 'application/json' }, payload: body })
      assert.equal(res.statusCode, 413)
    }
  },
  HEALTH_CHECK_TIMEOUT_MS: { testedBy: { file: 'plugins/chassis/service.test.ts', test: 'a hanging check is cut off by its time budget' } },
  SHUTDOWN_DELAY_MS: {
    test: 'SHUTDOWN_DELAY_MS keeps answering with readiness 503 for that long after SIGTERM',
    run: async (t) => {
      const port = await freePort()
      const started = startApiProcess(t, { PORT: String(port), SHUTDOWN_DELAY_MS: '3000' })
      const base = `http://127.0.0.1:${port}`
      await eventually(() => ready(`${base}/health/ready`), 'the api is ready')
      started.signal('SIGTERM')
      await eventually(async () => (await fetch(`${base}/health/ready`)).status === 503, 'readiness turns 503 while the server still answers')
      assert.equal((await fetch(`${base}/health/live`)).status, 200)
      assert.equal(await started.exit, 0)
    }
  },
  SHUTDOWN_TIMEOUT_MS: {
    test: 'SHUTDOWN_TIMEOUT_MS cuts a shutdown that takes longer with exit code 1',
    run: async (t) => {
      const port = await freePort()
      const started = startApiProcess(t, { PORT: String(port), SHUTDOWN_TIMEOUT_MS: '500' })
      await eventually(() => ready(`http://127.0.0.1:${port}/health/ready`), 'the api is ready')
      // A request in flight whose body never comes: the server, closing, waits for it (up to REQUEST_TIMEOUT_MS, 60 s),
      // so the shutdown cannot finish in time. Its 100 Continue says the server took it before the signal.
      const upload = connect(port, '127.0.0.1')
      t.after(() => upload.destroy())
      upload.write(`POST /api/v1/leads HTTP/1.1\r\nHost: 127.0.0.1\r\nx-service-key: ${TEST_SERVICE_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n`)
      const [continued] = await once(upload, 'data') as [Buffer]
      assert.match(continued.toString(), /^HTTP\/1\.1 100 Continue/)
      const signalled = Date.now()
      started.signal('SIGTERM')
      assert.equal(await started.exit, 1)
      assert.ok(Date.now() - signalled < 5000, 'it waited neither for the request in flight nor for the default timeout of 10 s')
    }
  },
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: {
    test: 'PRESSURE_MAX_EVENT_LOOP_DELAY_MS=50 sheds load after the event loop is blocked',
    run: async (t) => {
      const app = await api(t, { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '50' })
      // The delay is sampled over an interval: the loop is kept blocked most of the time until a sample sees it.
      await eventually(async () => {
        blockEventLoop(300)
        await sleep(5)
        return (await app.inject({ url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })).statusCode === 503
      }, 'a 503 under event-loop delay', 20_000)
    }
  },
  PRESSURE_MAX_EVENT_LOOP_UTILIZATION: {
    test: 'PRESSURE_MAX_EVENT_LOOP_UTILIZATION=0.5 sheds load while the event loop is busy',
    run: async (t) => {
      const app = await api(t, { PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0.5' })
      await eventually(async () => {
        blockEventLoop(300)
        await sleep(5)
        return (await app.inject({ url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })).statusCode === 503
      }, 'a 503 under event-loop utilization', 20_000)
    }
  },
  PRESSURE_MAX_HEAP_USED_BYTES: { testedBy: { file: 'plugins/chassis/service.test.ts', test: 'under pressure the service sheds load with 503 and Retry-After, but stays live' } },
  PRESSURE_RETRY_AFTER_S: { testedBy: { file: 'plugins/chassis/service.test.ts', test: 'under pressure the service sheds load with 503 and Retry-After, but stays live' } },
  DATABASE_URL: { testedBy: { file: 'services/api/main.test.ts', test: 'an unreachable database stops the process at boot with a non-zero exit' } },
  DB_SCHEMA: {
    test: 'DB_SCHEMA puts that schema first on the search_path',
    run: async (t) => {
      const app = await api(t)
      const { rows } = await app.db.query<{ schema: string }>('SELECT current_schema() AS schema')
      assert.equal(rows[0]?.schema, db.schema)
    }
  },
  DB_POOL_MIN: {
    test: 'DB_POOL_MIN=3 opens three connections at boot',
    run: async (t) => {
      const app = await api(t, { DB_POOL_MIN: '3' })
      assert.equal(app.db.getMetrics().totalConnections, 3)
    }
  },
  DB_POOL_MAX: {
    test: 'DB_POOL_MAX=2 never opens a third connection under six concurrent queries',
    run: async (t) => {
      const app = await api(t, { DB_POOL_MAX: '2' })
      let peak = 0
      let waited = 0
      const watch = setInterval(() => {
        const m = app.db.getMetrics()
        peak = Math.max(peak, m.totalConnections)
        waited = Math.max(waited, m.waitingRequests)
      }, 5)
      await Promise.all(Array.from({ length: 6 }, () => app.db.query('SELECT pg_sleep(0.1)')))
      clearInterval(watch)
      assert.equal(peak, 2)
      assert.ok(waited > 0, 'queries waited for a connection')
    }
  },
  DB_POOL_IDLE_TIMEOUT: {
    test: 'DB_POOL_IDLE_TIMEOUT=200 closes idle connections above the minimum',
    run: async (t) => {
      const app = await api(t, { DB_POOL_MIN: '1', DB_POOL_MAX: '3', DB_POOL_IDLE_TIMEOUT: '200' })
      await Promise.all(Array.from({ length: 3 }, () => app.db.query('SELECT pg_sleep(0.05)')))
      assert.equal(app.db.getMetrics().totalConnections, 3)
      await eventually(() => app.db.getMetrics().totalConnections === 1, 'back to the minimum')
    }
  },
  DB_CONNECTION_TIMEOUT: {
    test: 'DB_CONNECTION_TIMEOUT=300 fails a query that waits longer for a connection',
    run: async (t) => {
      const app = await api(t, { DB_POOL_MIN: '1', DB_POOL_MAX: '1', DB_CONNECTION_TIMEOUT: '300' })
      const holder = app.db.query('SELECT pg_sleep(2)')
      const started = Date.now()
      await assert.rejects(app.db.query('SELECT 1'), (e: Error & { statusCode?: number }) => e.statusCode === 503)
      assert.ok(Date.now() - started < 1900, 'it did not wait for the connection to come free')
      await holder
    }
  },
  DB_QUERY_TIMEOUT: {
    test: 'DB_QUERY_TIMEOUT=200 has PostgreSQL cancel a longer query',
    run: async (t) => {
      const app = await api(t, { DB_QUERY_TIMEOUT: '200' })
      await assert.rejects(app.db.query('SELECT pg_sleep(2)'), { sqlState: '57014' })
    }
  },
  DB_HEALTH_CHECK_INTERVAL: {
    test: 'DB_HEALTH_CHECK_INTERVAL=100 checks the pool every 100 ms',
    run: async (t) => {
      const app = await api(t, { DB_HEALTH_CHECK_INTERVAL: '100' })
      const first = app.db.getHealth().checkedAt?.getTime() ?? 0
      await eventually(() => (app.db.getHealth().checkedAt?.getTime() ?? 0) > first, 'a later health check')
    }
  },
  DB_TRANSACTION_RETRIES: {
    test: 'DB_TRANSACTION_RETRIES=1 re-runs a serialization failure once',
    run: async (t) => {
      const app = await api(t, { DB_TRANSACTION_RETRIES: '1' })
      let attempts = 0
      await assert.rejects(app.db.transaction(async (tx) => {
        attempts++
        await tx.query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
      }))
      assert.equal(attempts, 2)
    }
  },
  DATABASE_REPLICA_URLS: { testedBy: { file: 'services/api/replica-reads.test.ts', test: 'the leads GET routes read from the replica (DATABASE_REPLICA_URLS): a lead it has not replayed is found only with its position' } },
  DB_REPLICA_POOL_MAX: { testedBy: { file: 'services/api/replica-reads.test.ts', test: 'DB_REPLICA_POOL_MAX=2 opens at most two connections to the replica under six concurrent reads' } },
  DB_REPLICA_WAIT_MS: { testedBy: { file: 'services/api/replica-reads.test.ts', test: 'the wait is bounded: with DB_REPLICA_WAIT_MS shorter than the replay delay, the read goes to the primary' } },
  DB_REPLICA_HEALTH_CHECK_INTERVAL: { testedBy: { file: 'services/api/replica-reads.test.ts', test: 'DB_REPLICA_HEALTH_CHECK_INTERVAL=100 notices a stopped replica without any read, and its return' } },
  LEAD_BODY_LIMIT_BYTES: {
    test: 'LEAD_BODY_LIMIT_BYTES=2048 answers 413 to a larger lead',
    run: async (t) => {
      const app = await api(t, { LEAD_BODY_LIMIT_BYTES: '2048' })
      const res = await app.inject({ method: 'POST', url: '/api/v1/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'application/json' }, payload: JSON.stringify({ firstName: 'A'.repeat(3000) }) })
      assert.equal(res.statusCode, 413)
    }
  },
  REDIS_URL: {
    test: 'REDIS_URL gives the service a Redis client; unset it runs in-process',
    run: async (t) => {
      const shared = await api(t, { REDIS_URL })
      assert.equal(await shared.redis?.ping(), 'PONG')
      assert.equal(shared.cache.getStats().mode, 'two-tier')
      const single = await api(t)
      assert.equal(single.redis, undefined)
      assert.equal(single.cache.getStats().mode, 'local-only')
    }
  },
  REDIS_CLUSTER: {
    test: 'REDIS_CLUSTER=true makes the service a Redis Cluster client',
    run: async (t) => {
      const app = await api(t, { REDIS_URL, REDIS_CLUSTER: 'true' })
      assert.equal(isCluster(app.redis as NonNullable<typeof app.redis>), true)
      assert.equal(isCluster((await api(t, { REDIS_URL })).redis as NonNullable<typeof app.redis>), false)
    }
  },
  REDIS_COMMAND_TIMEOUT_MS: {
    test: 'REDIS_COMMAND_TIMEOUT_MS bounds the wait on a hung Redis: a cache read gives up after about 600 ms with 600, well before with 50',
    run: async (t) => {
      const redis = await startPrivateRedis()
      t.after(() => redis.destroy())
      const waited = async (timeoutMs: string): Promise<number> => {
        // A breaker that stays closed: every read waits its budget, none is skipped.
        const app = await api(t, { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: timeoutMs, CACHE_BREAKER_THRESHOLD: '1000' })
        await app.cache.ready()
        redis.pause()
        try {
          const started = performance.now()
          assert.equal(await cacheSource(app, `budget-${timeoutMs}`), 'loader')
          return performance.now() - started
        } finally {
          redis.resume()
        }
      }
      const slow = await waited('600')
      const fast = await waited('50')
      assert.ok(slow >= 550 && slow < 3000, `with 600 ms the read gave Redis up after ${slow.toFixed(0)} ms`)
      assert.ok(fast < 450, `with 50 ms the read gave Redis up after ${fast.toFixed(0)} ms`)
    }
  },
  CACHE_ENABLED: {
    test: 'CACHE_ENABLED=false sends every read to PostgreSQL; true serves the second from the cache',
    run: async (t) => {
      const url = `/api/v1/leads/${leadId}`
      const on = await api(t, { CACHE_ENABLED: 'true' })
      await on.inject({ url, headers: SERVICE_HEADERS })
      assert.equal((await on.inject({ url, headers: SERVICE_HEADERS })).headers['x-cache'], 'HIT-LOCAL')
      const off = await api(t, { CACHE_ENABLED: 'false' })
      await off.inject({ url, headers: SERVICE_HEADERS })
      const second = await off.inject({ url, headers: SERVICE_HEADERS })
      assert.equal(second.statusCode, 200)
      assert.equal(second.headers['x-cache'], undefined)
    }
  },
  CACHE_TTL: {
    test: 'CACHE_TTL=1 expires an entry after a second',
    run: async (t) => {
      const app = await api(t, { CACHE_TTL: '1', CACHE_GRACE: '0' })
      assert.equal(await cacheSource(app, 'ttl'), 'loader')
      assert.equal(await cacheSource(app, 'ttl'), 'local')
      await eventually(async () => (await cacheSource(app, 'ttl')) === 'loader', 'the entry expired')
    }
  },
  CACHE_PREFIX: {
    test: 'CACHE_PREFIX prefixes every cache key in Redis',
    run: async (t) => {
      const prefix = `${uniqueName('prefix')}:`
      const app = await api(t, { REDIS_URL, CACHE_PREFIX: prefix })
      await app.cache.set('probe', 1)
      assert.ok((await redisKeys(`${prefix}*`)).some((k) => k.includes('probe')))
    }
  },
  CACHE_GRACE: {
    test: 'CACHE_GRACE=30 serves an expired entry when its loader fails',
    run: async (t) => {
      const app = await api(t, { CACHE_TTL: '1', CACHE_GRACE: '30' })
      await app.cache.getOrSet('grace', async () => 'old')
      await sleep(1100)
      const served = await app.cache.getOrSetWithSource('grace', async () => { throw new Error('database down') })
      assert.deepEqual(served, { value: 'old', source: 'stale' })
    }
  },
  CACHE_LOCAL_MAX_ENTRIES: {
    test: 'CACHE_LOCAL_MAX_ENTRIES=2 keeps two entries in process',
    run: async (t) => {
      const app = await api(t, { CACHE_LOCAL_MAX_ENTRIES: '2' })
      for (const key of ['a', 'b', 'c', 'd']) await cacheSource(app, key)
      assert.equal(app.cache.getStats().local.entries, 2)
    }
  },
  CACHE_LOCAL_MAX_BYTES: {
    test: 'CACHE_LOCAL_MAX_BYTES=1024 keeps a larger value out of the in-process tier',
    run: async (t) => {
      const app = await api(t, { CACHE_LOCAL_MAX_BYTES: '1024' })
      await cacheSource(app, 'big', 'x'.repeat(4096))
      assert.equal(app.cache.getStats().local.entries, 0)
      assert.equal(await cacheSource(app, 'big', 'x'.repeat(4096)), 'loader')
    }
  },
  CACHE_LOCAL_TTL: {
    test: 'CACHE_LOCAL_TTL=1 drops the in-process copy after a second while Redis keeps it',
    run: async (t) => {
      const app = await api(t, { REDIS_URL, CACHE_LOCAL_TTL: '1' })
      assert.equal(await cacheSource(app, 'local-ttl'), 'loader')
      assert.equal(await cacheSource(app, 'local-ttl'), 'local')
      await eventually(async () => (await cacheSource(app, 'local-ttl')) === 'redis', 'served from Redis')
    }
  },
  CACHE_BREAKER_THRESHOLD: {
    test: 'CACHE_BREAKER_THRESHOLD=1 opens the cache breaker at the first Redis failure',
    run: async (t) => {
      const app = await api(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, CACHE_BREAKER_THRESHOLD: '1', CACHE_BREAKER_COOLDOWN_MS: '60000' })
      await cacheSource(app, 'breaker')
      assert.equal(app.cache.getStats().redis.breaker, 'open')
    }
  },
  CACHE_BREAKER_COOLDOWN_MS: {
    test: 'CACHE_BREAKER_COOLDOWN_MS=200 closes the cache breaker again soon after Redis is back',
    run: async (t) => {
      const redis = await startPrivateRedis()
      t.after(() => redis.destroy())
      const app = await api(t, { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '50', CACHE_BREAKER_THRESHOLD: '1', CACHE_BREAKER_COOLDOWN_MS: '200' })
      await app.cache.ready()
      redis.pause()
      await cacheSource(app, 'cooldown-1')
      redis.resume()
      assert.equal(app.cache.getStats().redis.breaker, 'open')
      // Well under the default cooldown of 2000 ms, a probe has found Redis back.
      await eventually(async () => {
        await cacheSource(app, `cooldown-${Date.now()}`)
        return app.cache.getStats().redis.breaker === 'closed'
      }, 'the breaker closed', 1500)
    }
  },
  CACHE_ACK_TIMEOUT_MS: {
    test: 'CACHE_ACK_TIMEOUT_MS=300 bounds the wait for an instance that never acknowledges',
    run: async (t) => {
      const prefix = `${uniqueName('ack')}:`
      const app = await api(t, { REDIS_URL, CACHE_PREFIX: prefix, CACHE_ACK_TIMEOUT_MS: '300' })
      await app.cache.ready()
      const silent = new Redis(REDIS_URL)
      t.after(() => { silent.disconnect() })
      await silent.subscribe(`${prefix}__invalidate`)
      const timeoutsBefore = app.cache.getStats().invalidations.ackTimeouts
      const started = Date.now()
      await app.cache.del('ack-probe')
      const waited = Date.now() - started
      assert.ok(waited >= 290 && waited < 3000, `waited ${waited} ms`)
      // The instance's own background invalidations (the silent subscriber hears them too) may time out beside it.
      assert.ok(app.cache.getStats().invalidations.ackTimeouts - timeoutsBefore >= 1, 'the delete counted its acknowledgement timeout')
    }
  },
  RATE_LIMIT_ENABLED: {
    test: 'RATE_LIMIT_ENABLED=false sends no rate-limit headers; true does',
    run: async (t) => {
      const on = await api(t, { RATE_LIMIT_ENABLED: 'true' })
      assert.equal((await on.inject('/api/v1/leads?limit=1')).headers['x-ratelimit-limit'], '100')
      const off = await api(t, { RATE_LIMIT_ENABLED: 'false' })
      assert.equal((await off.inject('/api/v1/leads?limit=1')).headers['x-ratelimit-limit'], undefined)
      assert.equal(off.hasDecorator('rateLimiter'), false)
    }
  },
  RATE_LIMIT_WINDOW_MS: {
    test: 'RATE_LIMIT_WINDOW_MS=1000 admits again a second after the limit was reached',
    run: async (t) => {
      const app = await api(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', RATE_LIMIT_WINDOW_MS: '1000' })
      assert.equal((await app.inject('/api/v1/leads?limit=1')).statusCode, 401)
      const refused = await app.inject('/api/v1/leads?limit=1')
      assert.equal(refused.statusCode, 429)
      assert.equal(refused.headers['retry-after'], '1')
      await eventually(async () => (await app.inject('/api/v1/leads?limit=1')).statusCode !== 429, 'admitted again')
    }
  },
  RATE_LIMIT_MAX_REQUESTS: {
    test: 'RATE_LIMIT_MAX_REQUESTS=2 refuses the third request and getRemainingRequests counts against it',
    run: async (t) => {
      const app = await api(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '2' })
      const first = await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '198.51.100.20' })
      assert.equal(first.headers['x-ratelimit-limit'], '2')
      assert.equal(await app.rateLimiter.getRemainingRequests('198.51.100.20'), 1)
      await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '198.51.100.20' })
      assert.equal((await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '198.51.100.20' })).statusCode, 429)
    }
  },
  RATE_LIMIT_API_KEY_MAX_REQUESTS: {
    test: 'RATE_LIMIT_API_KEY_MAX_REQUESTS=7 is the limit of a caller with a key',
    run: async (t) => {
      const app = await api(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_API_KEY_MAX_REQUESTS: '7' })
      const { key } = await app.apiKeys.mint('settings', ['leads:read'])
      const res = await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['x-ratelimit-limit'], '7')
    }
  },
  RATE_LIMIT_PREFIX: {
    test: 'RATE_LIMIT_PREFIX prefixes the rate-limit keys in Redis',
    run: async (t) => {
      const prefix = `${uniqueName('rlprefix')}:`
      const app = await api(t, { REDIS_URL, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PREFIX: prefix })
      await app.inject('/api/v1/leads?limit=1')
      assert.ok((await redisKeys(`${prefix}*`)).length > 0)
    }
  },
  RATE_LIMIT_ALLOWLIST: {
    test: 'RATE_LIMIT_ALLOWLIST exempts the listed network and only it',
    run: async (t) => {
      const app = await api(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', RATE_LIMIT_ALLOWLIST: '10.0.0.0/8' })
      for (let i = 0; i < 3; i++) assert.notEqual((await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '10.1.2.3' })).statusCode, 429)
      await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '192.0.2.1' })
      assert.equal((await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '192.0.2.1' })).statusCode, 429)
    }
  },
  RATE_LIMIT_ON_STORE_FAILURE: {
    test: 'RATE_LIMIT_ON_STORE_FAILURE=closed answers 503 while Redis is unreachable',
    run: async (t) => {
      const app = await api(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_ON_STORE_FAILURE: 'closed' })
      const res = await app.inject('/api/v1/leads?limit=1')
      assert.equal(res.statusCode, 503)
      assert.equal(res.json().code, 'RATE_LIMIT_UNAVAILABLE')
    }
  },
  SERVICE_API_KEY: {
    test: 'SERVICE_API_KEY lets a caller presenting it through a scoped route, and no other value',
    run: async (t) => {
      const secret = 'another-service-key-0123456789abcdefghij'
      const app = await api(t, { SERVICE_API_KEY: secret })
      assert.equal((await app.inject({ url: '/api/v1/admin/pool', headers: { 'x-service-key': secret } })).statusCode, 200)
      assert.equal((await app.inject({ url: '/api/v1/admin/pool', headers: SERVICE_HEADERS })).statusCode, 401)
    }
  },
  SERVICE_API_KEY_PREVIOUS: {
    test: 'SERVICE_API_KEY_PREVIOUS lets a caller presenting it through a scoped route beside SERVICE_API_KEY, and is refused at start when short or a placeholder',
    run: async (t) => {
      const previous = 'previous-service-key-0123456789abcdefghij'
      const app = await api(t, { SERVICE_API_KEY_PREVIOUS: previous })
      assert.equal((await app.inject({ url: '/api/v1/admin/pool', headers: { 'x-service-key': previous } })).statusCode, 200)
      assert.equal((await app.inject({ url: '/api/v1/admin/pool', headers: SERVICE_HEADERS })).statusCode, 200)
      assert.equal((await app.inject({ url: '/api/v1/admin/pool', headers: { 'x-service-key': `${previous}x` } })).statusCode, 401)
      for (const refused of ['change-me-to-a-long-random-secret', 'short-key-of-31-characters-long']) {
        assert.throws(() => testApiConfig(db, { SERVICE_API_KEY_PREVIOUS: refused }), /CHASSIS_CONFIG_INVALID.*SERVICE_API_KEY_PREVIOUS must/)
      }
    }
  },
  API_KEY_CACHE_TTL: {
    test: 'API_KEY_CACHE_TTL=1 keeps a verified key in the shared cache for one second, not thirty',
    run: async (t) => {
      // A revocation is announced by the database at once (services/api/revocation.test.ts), so what the TTL still
      // bounds is how long a verdict lives in the cache: its Redis entry's expiry (no grace period on top here).
      const prefix = `${uniqueName('ttl')}:`
      const app = await api(t, { API_KEY_CACHE_TTL: '1', CACHE_GRACE: '0', REDIS_URL, CACHE_PREFIX: prefix })
      const minted = await app.apiKeys.mint('ttl', ['leads:read'])
      const redis = new Redis(REDIS_URL)
      t.after(() => { redis.disconnect() })
      const cached = `${prefix}apikey:${minted.id}`
      // Verdicts are cached once the instance hears revocations (its LISTEN is up, a moment after start).
      await eventually(async () => {
        assert.equal((await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': minted.key } })).statusCode, 200)
        return (await redis.exists(cached)) === 1
      }, 'the verdict cached')
      const pttl = await redis.pttl(cached)
      assert.ok(pttl > 0 && pttl <= 1000, `the verdict expires within 1 s (PTTL ${pttl} ms)`)
      await eventually(async () => (await redis.exists(cached)) === 0, 'the verdict expired')
    }
  },
  QUERY_STATS_ENABLED: { testedBy: { file: 'services/api/query-stats.test.ts', test: 'QUERY_STATS_ENABLED=false removes the query seam subscriber' } },
  SLOW_QUERY_THRESHOLD_MS: { testedBy: { file: 'services/api/query-stats.test.ts', test: 'SLOW_QUERY_THRESHOLD_MS lists a query slower than it as slow' } },
  OTEL_PG_INSTRUMENTATION: { testedBy: { file: 'services/api/tracing.test.ts', test: 'with OTEL_PG_INSTRUMENTATION=true the pg instrumentation makes the query spans, and the seam makes none' } },
  OTEL_LOGS_EXPORTER: { testedBy: { file: 'plugins/telemetry/otel-preload.test.ts', test: 'OTEL_LOGS_EXPORTER=otlp still sends the log lines as OTLP log records' } },
  OTEL_METRICS_EXPORTER: { testedBy: { file: 'plugins/telemetry/otel-preload.test.ts', test: 'OTEL_METRICS_EXPORTER=otlp still pushes metrics over OTLP' } },
  OTEL_SDK_DISABLED: { testedBy: { file: 'plugins/telemetry/otel-preload.test.ts', test: 'OTEL_SDK_DISABLED=true starts no instrumentation even with an endpoint set: no hooks on Fastify, no Redis wrapper, nothing exported' } },
  OTEL_FASTIFY_DETAIL: {
    test: 'OTEL_FASTIFY_DETAIL=true adds a span per hook and handler; false leaves the server span alone',
    run: async (t) => {
      const fastifySpans = async (detail: string): Promise<string[]> => {
        const otlp = await startOtlpReceiver(t)
        const service = await startTracedService(t, 'api', 'dist/services/api/main.js', otlp.url, { DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, OTEL_FASTIFY_DETAIL: detail })
        assert.equal((await fetch(`${service.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })).status, 200, service.stderr())
        const server = (): ReceivedSpan | undefined => otlp.received.find((r) => r.span.kind === 2 && r.span.name === 'GET /api/v1/leads')
        await eventually(() => server() !== undefined, 'the server span exported')
        // Stopping exports every span still queued, so the whole trace is in.
        await service.stop()
        return otlp.received.filter((r) => r.span.traceId === server()?.span.traceId && r.scope === server()?.scope).map((r) => r.span.name)
      }
      const detailed = await fastifySpans('true')
      assert.ok(detailed.length > 2, `hook and handler spans: ${detailed.join(', ')}`)
      assert.equal((await fastifySpans('false')).length, 1, 'the server span only')
    }
  },
  IMPORT_MAX_BYTES: { testedBy: { file: 'services/data-service/imports.test.ts', test: 'bad requests get clear 4xx answers: wrong type, too large, no scope' } },
  IMPORT_BATCH_SIZE: { testedBy: { file: 'services/data-service/imports.test.ts', test: 'a stream too large for the limit keeps the batches it committed and reports them; the rest is not half written' } },
  IMPORT_MAX_REJECTIONS: {
    test: 'IMPORT_MAX_REJECTIONS=1 lists one rejected row and counts them all',
    run: async (t) => {
      const { app } = await startDataService(t, db, { IMPORT_MAX_REJECTIONS: '1', CACHE_PREFIX: `${uniqueName('imp')}:` })
      const csv = ['firstName,lastName,email,phone,product,state,source,score', 'A,B,bad-1,,auto,CA,web,1', 'A,B,bad-2,,auto,CA,web,1', 'A,B,bad-3,,auto,CA,web,1'].join('\n')
      const res = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv' }, payload: csv })
      assert.equal(res.statusCode, 200, res.body)
      assert.equal(res.json().rejected, 3)
      assert.equal(res.json().rejections.length, 1)
      assert.equal(res.json().rejectionsTruncated, true)
    }
  },
  REPORT_CACHE_TTL: {
    test: 'REPORT_CACHE_TTL=1 recomputes a report after a second',
    run: async (t) => {
      const { app } = await startDataService(t, db, { REPORT_CACHE_TTL: '1', CACHE_GRACE: '0', CACHE_PREFIX: `${uniqueName('rep')}:` })
      const get = async () => (await app.inject({ url: '/data/v1/reports/leads?groupBy=state', headers: SERVICE_HEADERS })).headers['x-cache']
      assert.equal(await get(), 'MISS')
      assert.equal(await get(), 'HIT-LOCAL')
      await eventually(async () => (await get()) === 'MISS', 'the report recomputed')
    }
  },
  DATA_SERVICE_URL: {
    test: 'DATA_SERVICE_URL is where the orchestrator calls the data-service',
    run: async (t) => {
      const upstream = await recordingServer(t, 404)
      const { app } = await startOrchestrator(t, db, upstream.url)
      await app.inject({ url: `/orchestrator/v1/leads/${leadId}/score`, headers: SERVICE_HEADERS })
      assert.deepEqual(upstream.paths, [`/data/v1/leads/${leadId}`])
    }
  },
  DATA_SERVICE_TIMEOUT_MS: { testedBy: { file: 'services/orchestrator/resilience.test.ts', test: 'a data-service that accepts connections and never answers costs a caller at most its budget' } },
  DATA_SERVICE_ATTEMPT_TIMEOUT_MS: {
    test: 'DATA_SERVICE_ATTEMPT_TIMEOUT_MS=300 retries an attempt the data-service stalls on, within DATA_SERVICE_TIMEOUT_MS; 0 gives the first attempt the whole budget',
    run: async (t) => {
      // The first request of each pair stalls, the second is answered.
      let n = 0
      const held: Array<{ destroy: () => void }> = []
      const server = createServer((req, res) => { if (++n % 2 === 1) held.push(res); else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(leadAnswer(leadId))) })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      t.after(() => { for (const r of held) r.destroy(); server.closeAllConnections(); server.close() })
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
      const score = async (env: Record<string, string>): Promise<number> => {
        const { app } = await startOrchestrator(t, db, url, { DATA_SERVICE_TIMEOUT_MS: '1500', ...env })
        return (await app.inject({ url: `/orchestrator/v1/leads/${leadId}/score`, headers: SERVICE_HEADERS })).statusCode
      }
      assert.equal(await score({ DATA_SERVICE_ATTEMPT_TIMEOUT_MS: '300' }), 200)
      assert.equal(await score({ DATA_SERVICE_ATTEMPT_TIMEOUT_MS: '0' }), 503, 'the stalled first attempt took the whole budget')
      assert.throws(() => loadOrchestratorConfig({ dotenv: false, env: testEnv(db, { DATA_SERVICE_TIMEOUT_MS: '1000', DATA_SERVICE_ATTEMPT_TIMEOUT_MS: '1001' }) }), /DATA_SERVICE_ATTEMPT_TIMEOUT_MS must not exceed DATA_SERVICE_TIMEOUT_MS/)
    }
  },
  DATA_SERVICE_RETRIES: {
    test: 'DATA_SERVICE_RETRIES=3 makes four attempts of an idempotent call to a data-service answering 503',
    run: async (t) => {
      const upstream = await recordingServer(t, 503)
      const { app } = await startOrchestrator(t, db, upstream.url, { DATA_SERVICE_RETRIES: '3', DATA_SERVICE_BREAKER_THRESHOLD: '10' })
      assert.equal((await app.inject({ url: `/orchestrator/v1/leads/${leadId}/score`, headers: SERVICE_HEADERS })).statusCode, 503)
      assert.equal(upstream.paths.length, 4)
    }
  },
  DATA_SERVICE_BREAKER_THRESHOLD: { testedBy: { file: 'services/orchestrator/resilience.test.ts', test: 'with the data-service stopped the orchestrator answers 503 with Retry-After within its budget, opens its circuit, and recovers' } },
  DATA_SERVICE_BREAKER_COOLDOWN_MS: { testedBy: { file: 'services/orchestrator/resilience.test.ts', test: 'with the data-service stopped the orchestrator answers 503 with Retry-After within its budget, opens its circuit, and recovers' } },
  ROUTING_BATCH_MAX: {
    test: 'ROUTING_BATCH_MAX=2 answers 400 to a batch of three',
    run: async (t) => {
      const { app } = await startOrchestrator(t, db, 'http://127.0.0.1:9', { ROUTING_BATCH_MAX: '2' })
      const batch = async (limit: number) => app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit } })
      const res = await batch(3)
      assert.equal(res.statusCode, 400)
      assert.match(res.json().message, /limit/)
    }
  },
  EVENTS_CHANNEL: { testedBy: { file: 'services/orchestrator/events.test.ts', test: 'EVENTS_CHANNEL separates fleets sharing one Redis: an instance on another channel does not see the events, one on the same channel does' } },
  EVENTS_MAX_SOCKETS: { testedBy: { file: 'services/orchestrator/events.test.ts', test: 'an instance holds at most EVENTS_MAX_SOCKETS_PER_KEY event sockets of one key (429 TOO_MANY_SOCKETS) and EVENTS_MAX_SOCKETS in all (503 EVENTS_AT_CAPACITY), concurrent upgrades included; a closed socket frees its place' } },
  EVENTS_MAX_SOCKETS_PER_KEY: { testedBy: { file: 'services/orchestrator/events.test.ts', test: 'an instance holds at most EVENTS_MAX_SOCKETS_PER_KEY event sockets of one key (429 TOO_MANY_SOCKETS) and EVENTS_MAX_SOCKETS in all (503 EVENTS_AT_CAPACITY), concurrent upgrades included; a closed socket frees its place' } },
  EVENTS_MAX_BUFFERED_BYTES: {
    test: 'EVENTS_MAX_BUFFERED_BYTES=1024 disconnects a client that stopped reading, where 64 MB keeps it',
    run: async (t) => {
      const env = { REDIS_URL, EVENTS_CHANNEL: uniqueName('settings-events'), CACHE_PREFIX: `${uniqueName('ev')}:` }
      const strict = await startOrchestrator(t, db, 'http://127.0.0.1:9', { ...env, EVENTS_MAX_BUFFERED_BYTES: '1024' }, true)
      const loose = await startOrchestrator(t, db, 'http://127.0.0.1:9', { ...env, EVENTS_MAX_BUFFERED_BYTES: String(64 * 1024 * 1024) }, true)
      const clients = await Promise.all([strict.url, loose.url].map(async (url) => {
        const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers: SERVICE_HEADERS })
        t.after(() => { ws.terminate() })
        const received: string[] = []
        const closed = once(ws, 'close').then(([code]) => code as number)
        await once(ws, 'message')
        ws.on('message', (data: Buffer) => received.push(data.toString('utf8', 0, 40)))
        ws.pause()
        return { ws, received, closed }
      }))
      // Three 8 MB events: more than the kernel buffers of a connection whose reader stopped hold (a few MB), less
      // than Redis lets a subscriber fall behind (32 MB).
      const publisher = new Redis(REDIS_URL)
      t.after(() => { publisher.disconnect() })
      for (let i = 0; i < 3; i++) await publisher.publish(env.EVENTS_CHANNEL, JSON.stringify({ type: 'lead.assigned', i, padding: 'x'.repeat(8 * 1024 * 1024) }))
      // Nothing observable says when the services have handed the events to their sockets; they take milliseconds.
      await sleep(2000)
      for (const client of clients) client.ws.resume()
      const [strictClient, looseClient] = clients as [typeof clients[0], typeof clients[0]]
      assert.equal(await strictClient.closed, 1013)
      assert.ok(strictClient.received.length < 3, `the strict client got ${strictClient.received.length} events before it was dropped`)
      await eventually(() => looseClient.received.length === 3, 'the loose client got every event')
      assert.equal(looseClient.ws.readyState, WebSocket.OPEN)
    }
  },
  EMBEDDED_PG_PORT: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  EMBEDDED_PG_DATA_DIR: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  API_PORT: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  DATA_SERVICE_PORT: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  ORCHESTRATOR_PORT: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  SEED_COUNT: { testedBy: { file: 'scripts/start.test.ts', test: 'npm start with nothing configured: embedded PostgreSQL, seeded leads, clean stop, data reused; a second npm start sharing it says it leaves it running instead of "stopped"' } },
  API_KEY_LOOKUP_LIMIT: { testedBy: { file: 'services/api/key-lookups.test.ts', test: 'API_KEY_LOOKUP_LIMIT and API_KEY_LOOKUP_WINDOW_MS set the budget; a valid key in a burst costs one lookup and is never refused' } },
  API_KEY_LOOKUP_WINDOW_MS: { testedBy: { file: 'services/api/key-lookups.test.ts', test: 'API_KEY_LOOKUP_LIMIT and API_KEY_LOOKUP_WINDOW_MS set the budget; a valid key in a burst costs one lookup and is never refused' } },
  IMPORT_MAX_RECORD_BYTES: { testedBy: { file: 'services/data-service/imports.test.ts', test: 'an over-long NDJSON record is rejected alone' } },
  IMPORT_MAX_CONCURRENT: { testedBy: { file: 'services/data-service/imports.test.ts', test: 'IMPORT_MAX_CONCURRENT=1 answers a second concurrent import 429' } },
  REQUEST_TIMEOUT_MS: { testedBy: { file: 'test/faults/slow-requests.test.ts', test: 'REQUEST_TIMEOUT_MS is the bound: a body that takes longer than 1 s arrives whole when the setting allows 5 s' } },
  OPENAPI_UI_ENABLED: { testedBy: { file: 'test/contract/reference-page.test.ts', test: 'OPENAPI_UI_ENABLED=false turns the reference page off and keeps the document' } },
  CACHE_WARM_ENABLED: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'with warming off (CACHE_WARM_ENABLED=false) a restarted instance starts with an empty local tier' } },
  CACHE_WARM_MAX_ENTRIES: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'warming copies at most CACHE_WARM_MAX_ENTRIES entries, the hottest ones' } },
  CACHE_WARM_TIMEOUT_MS: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'warming gives up after CACHE_WARM_TIMEOUT_MS when Redis hangs, so a start is never held longer' } },
  CACHE_REFRESH_AHEAD_RATIO: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'with CACHE_REFRESH_AHEAD_RATIO=0 nothing is reloaded in the background and a hot key misses at expiry' } },
  CACHE_REFRESH_AHEAD_MAX_KEYS: { testedBy: { file: 'plugins/cache/refresh-ahead.test.ts', test: 'a key outside the CACHE_REFRESH_AHEAD_MAX_KEYS hottest is not reloaded in the background' } },
  CACHE_REFRESH_AHEAD_CONCURRENCY: { testedBy: { file: 'plugins/cache/refresh-ahead.test.ts', test: 'CACHE_REFRESH_AHEAD_CONCURRENCY bounds the background reloads running at once on an instance' } },
  CACHE_HOT_KEYS_MAX: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'with CACHE_HOT_KEYS_MAX=0 nothing is counted, so a restarted instance has nothing to warm' } },
  CACHE_HOT_KEYS_INTERVAL_MS: { testedBy: { file: 'plugins/cache/warming.test.ts', test: 'hot-key counts reach Redis every CACHE_HOT_KEYS_INTERVAL_MS without an explicit flush' } },
  CDN_PROVIDER: { testedBy: { file: 'scripts/cdn-purge.test.ts', test: 'npm run cdn:purge purges paths and tags through the configured provider and never prints the key' } },
  CDN_ZONE_ID: { testedBy: { file: 'scripts/cdn-purge.test.ts', test: 'npm run cdn:purge purges paths and tags through the configured provider and never prints the key' } },
  CDN_API_KEY: { testedBy: { file: 'scripts/cdn-purge.test.ts', test: 'npm run cdn:purge purges paths and tags through the configured provider and never prints the key' } },
  CDN_SITE_URL: { testedBy: { file: 'scripts/cdn-purge.test.ts', test: 'npm run cdn:purge purges paths and tags through the configured provider and never prints the key' } },
  CDN_API_URL: { testedBy: { file: 'scripts/cdn-purge.test.ts', test: 'npm run cdn:purge purges paths and tags through the configured provider and never prints the key' } }
}

const configurationPage = readFileSync(join(projectRoot, 'docs', 'configuration.md'), 'utf8')

/** The variables of the configuration table (docs/configuration.md), read when the test runs. */
function tableVariables (): string[] {
  return [...configurationPage.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1] as string)
}

/** The paragraph of docs/configuration.md that names the variables no test can observe, and why. */
function unobservableParagraph (): string {
  const start = configurationPage.indexOf('Cannot be observed in a test:')
  return start < 0 ? '' : configurationPage.slice(start, configurationPage.indexOf('\n\n', start))
}

/** Each top-level test of a file, by name, with its source after its title up to the next test. */
function testsOf (file: string): Map<string, string> {
  const source = readFileSync(join(projectRoot, file), 'utf8')
  const starts = [...source.matchAll(/^test\((['"])((?:\\.|(?!\1).)*)\1/gm)]
  // The body without the title: a test that only names a variable in its title does not set it.
  return new Map(starts.map((m, i) => [m[2]?.replace(/\\(.)/g, '$1') as string, source.slice(m.index + m[0].length, starts[i + 1]?.index ?? source.length)]))
}

test('every variable of the configuration table has a test that changes it', () => {
  const variables = tableVariables()
  assert.ok(variables.length > 50, 'the configuration table was found')
  const missing = variables.filter((name) => settings[name] === undefined)
  assert.deepEqual(missing, [], 'variables with no case in test/settings.test.ts')
  assert.deepEqual(Object.keys(settings).filter((name) => !variables.includes(name)), [], 'cases for variables the table no longer lists')
  for (const [name, setting] of Object.entries(settings)) {
    if ('testedBy' in setting) {
      assert.ok(existsSync(join(projectRoot, setting.testedBy.file)), `${name}: ${setting.testedBy.file} does not exist`)
      const body = testsOf(setting.testedBy.file).get(setting.testedBy.test)
      assert.ok(body !== undefined, `${name}: no test "${setting.testedBy.test}" in ${setting.testedBy.file}`)
      assert.ok(body.includes(name), `${name}: the test "${setting.testedBy.test}" does not set it`)
    }
    if ('unobservable' in setting) assert.ok(unobservableParagraph().includes(`\`${name}\``), `${name}: docs/configuration.md does not say why no test observes it`)
  }
})

for (const setting of Object.values(settings)) {
  if ('run' in setting) test(setting.test, { timeout: 60_000 }, async (t) => setting.run(t))
}
