import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { CLIENT_TIMEOUT_MARGIN_MS, createConnectionPool, type ConnectionPool, type ConnectionPoolOptions } from './pool.js'
import { DatabaseError } from './errors.js'
import { QUERY_CHANNEL_NAME, type QueryContext } from './channel.js'
import { TEST_DATABASE_URL, uniqueName } from '../../test/helpers/database.js'
import { startFaultProxy } from '../../test/helpers/fault-proxy.js'
import { blockEventLoop } from '../../test/helpers/event-loop.js'
import { execFileSync } from 'node:child_process'
import pg from 'pg'

const schema = uniqueName('pool')
const pools: ConnectionPool[] = []

async function admin<R extends object = Record<string, unknown>> (text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    return (await client.query<R>(text, params)).rows
  } finally {
    await client.end()
  }
}

async function open (options: ConnectionPoolOptions = {}): Promise<ConnectionPool> {
  const pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, schema, name: uniqueName('p'), min: 1, max: 5, healthCheckInterval: 0, ...options })
  pools.push(pool)
  await pool.start()
  return pool
}

async function backends (applicationName: string): Promise<number> {
  const rows = await admin<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName])
  return rows[0]?.n ?? 0
}

before(async () => {
  await admin(`CREATE SCHEMA ${schema}`)
  await admin(`CREATE TABLE ${schema}.accounts (id int PRIMARY KEY, balance int NOT NULL)`)
})

after(async () => {
  await Promise.all(pools.map((p) => p.close()))
  await admin(`DROP SCHEMA ${schema} CASCADE`)
})

test('min connections are open right after start', async () => {
  const pool = await open({ min: 3, max: 5 })
  assert.equal(pool.getMetrics().totalConnections, 3)
  assert.equal(await backends(pool.name), 3)
})

test('with max=5 and 50 concurrent queries, max is never exceeded and requests wait', async () => {
  const pool = await open({ min: 1, max: 5 })
  let maxSeen = 0
  let waitingSeen = 0
  let serverMax = 0
  const sampler = setInterval(() => {
    const m = pool.getMetrics()
    maxSeen = Math.max(maxSeen, m.totalConnections)
    waitingSeen = Math.max(waitingSeen, m.waitingRequests)
  }, 2)
  const serverSampler = (async () => {
    for (let i = 0; i < 10; i++) {
      serverMax = Math.max(serverMax, await backends(pool.name))
      await sleep(20)
    }
  })()
  await Promise.all(Array.from({ length: 50 }, () => pool.query('SELECT pg_sleep(0.02)')))
  clearInterval(sampler)
  await serverSampler
  assert.ok(maxSeen <= 5, `saw ${maxSeen} connections`)
  assert.ok(serverMax <= 5, `server saw ${serverMax} backends`)
  assert.ok(waitingSeen > 0, 'no request ever waited')
  assert.equal(pool.getMetrics().waitingRequests, 0)
})

test('a query past the timeout is cancelled on the server, not just abandoned', async () => {
  const pool = await open({ queryTimeoutMillis: 200 })
  const started = Date.now()
  await assert.rejects(pool.query("SELECT pg_sleep(5), 'runaway-marker'"), (e: DatabaseError) => {
    assert.equal(e.code, 'DB_QUERY_TIMEOUT')
    assert.equal(e.sqlState, '57014')
    assert.equal(e.statusCode, 503)
    return true
  })
  assert.ok(Date.now() - started < 2000)
  const running = await admin("SELECT pid FROM pg_stat_activity WHERE query LIKE '%runaway-marker%' AND state = 'active' AND pid <> pg_backend_pid()")
  assert.equal(running.length, 0)
  // The connection stays usable after the cancel.
  assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1)
})

test('a connection obtained with its query\'s time already spent (the event loop blocked while it was handed over) is refused the statement unsent and kept, not destroyed by a statement timed out mid-answer', async () => {
  const pool = await open({ queryTimeoutMillis: 100, min: 1, max: 1 })
  const pid = async (): Promise<number> => (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number
  const before = await pid()
  const late = pool.query("SELECT pg_sleep(0.05), 'unsent-marker'")
  // The bound is 100 ms + the client margin: the connection reaches the query after all of it.
  blockEventLoop(100 + CLIENT_TIMEOUT_MARGIN_MS + 50)
  await assert.rejects(late, (e: DatabaseError) => {
    // Before, it was sent with a 1 ms read timeout, which expired mid-answer: the connection was destroyed.
    assert.equal(e.code, 'DB_UNAVAILABLE')
    assert.match(e.message, /not sent/)
    assert.equal(e.statusCode, 503)
    assert.equal(e.retryable, true, 'never sent, so safe to send again')
    return true
  })
  assert.equal(await pid(), before, 'the same connection serves the next query')
})

test('a transaction rolls back when its callback throws', async () => {
  const pool = await open()
  await assert.rejects(pool.transaction(async (tx) => {
    await tx.query('INSERT INTO accounts (id, balance) VALUES (1, 100)')
    throw new Error('changed my mind')
  }), /changed my mind/)
  assert.equal((await pool.query('SELECT * FROM accounts WHERE id = 1')).rows.length, 0)
})

test('a committed transaction returns the callback result', async () => {
  const pool = await open()
  const result = await pool.transaction(async (tx) => {
    await tx.query('INSERT INTO accounts (id, balance) VALUES (2, 50)')
    return 'done'
  })
  assert.equal(result, 'done')
  assert.equal((await pool.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = 2')).rows[0]?.balance, 50)
})

test('a read-only transaction refuses writes', async () => {
  const pool = await open()
  await assert.rejects(pool.transaction((tx) => tx.query('INSERT INTO accounts VALUES (3, 1)'), { readOnly: true }),
    (e: DatabaseError) => e.sqlState === '25006')
})

test('two conflicting SERIALIZABLE transactions both end committed thanks to the re-run', async () => {
  const pool = await open({ min: 2, max: 4 })
  await pool.query('INSERT INTO accounts (id, balance) VALUES (10, 0)')
  let attempts = 0
  const barrier = Promise.withResolvers<void>()
  let arrived = 0
  const increment = () => pool.transaction(async (tx) => {
    attempts++
    const { rows } = await tx.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = 10')
    // Both first attempts read before either writes, which forces a serialization failure.
    if (++arrived === 2) barrier.resolve()
    if (attempts <= 2) await Promise.race([barrier.promise, sleep(2000)])
    await tx.query('UPDATE accounts SET balance = $1 WHERE id = 10', [(rows[0]?.balance ?? 0) + 1])
  }, { isolationLevel: 'serializable' })
  await Promise.all([increment(), increment()])
  assert.ok(attempts >= 3, `expected a re-run, saw ${attempts} attempts`)
  assert.equal((await pool.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = 10')).rows[0]?.balance, 2)
})

test('PostgreSQL errors map to typed errors with SQLSTATE and retryable flag', async () => {
  const pool = await open()
  await pool.query('INSERT INTO accounts (id, balance) VALUES (20, 1)')
  await assert.rejects(pool.query('INSERT INTO accounts (id, balance) VALUES (20, 1)'), (e: DatabaseError) => {
    assert.ok(e instanceof DatabaseError)
    assert.equal(e.code, 'DB_UNIQUE_VIOLATION')
    assert.equal(e.sqlState, '23505')
    assert.equal(e.statusCode, 409)
    assert.equal(e.retryable, false)
    assert.equal(e.constraint, 'accounts_pkey')
    return true
  })
  await assert.rejects(pool.query('INSERT INTO accounts (id, balance) VALUES (21, NULL)'), { code: 'DB_CONSTRAINT_VIOLATION', statusCode: 400 })
  await assert.rejects(pool.query("SELECT 'x'::int"), { code: 'DB_INVALID_INPUT', sqlState: '22P02' })
  await assert.rejects(pool.query('SELECT * FROM no_such_table'), { code: 'DB_ERROR', sqlState: '42P01', statusCode: 500 })
})

test('every query passes through the seam, with no parameter values in it', async () => {
  const pool = await open()
  const seen: QueryContext[] = []
  const onEnd = (message: unknown) => { seen.push(message as QueryContext) }
  subscribe(`tracing:${QUERY_CHANNEL_NAME}:asyncEnd`, onEnd)
  try {
    await pool.query('SELECT $1::text AS secret', ['top-secret'])
    await pool.transaction((tx) => tx.query('SELECT 1'))
  } finally {
    unsubscribe(`tracing:${QUERY_CHANNEL_NAME}:asyncEnd`, onEnd)
  }
  const mine = seen.filter((c) => c.pool === pool.name)
  assert.deepEqual(mine.map((c) => c.text), ['SELECT $1::text AS secret', 'BEGIN ISOLATION LEVEL READ COMMITTED', 'SELECT 1', 'COMMIT'])
  assert.equal(mine[0]?.paramCount, 1)
  assert.equal(mine[0]?.result?.rowCount, 1)
  // Parameter values stay out of the context; only the result (what the caller gets back) carries data.
  assert.doesNotMatch(JSON.stringify(mine.map((c) => ({ ...c, result: c.result?.rowCount }))), /top-secret/)
})

test('a killed connection neither crashes the process nor leaves the pool below min', async () => {
  const pool = await open({ min: 2, max: 4 })
  await admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [pool.name])
  // Idle clients see the termination as an error event; the pool replaces them.
  for (let i = 0; i < 50 && (await backends(pool.name)) < 2; i++) await sleep(50)
  assert.equal(await backends(pool.name), 2)
  assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1)
  assert.ok(pool.getMetrics().errors >= 1)
})

test('the pool refills to min after a drop with no traffic', async () => {
  const pool = await open({ min: 2, max: 4 })
  const terminate = () => admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [pool.name])
  // A drop under load: the traffic after it opens connections before the refill runs, so the refill finds nothing missing.
  await terminate()
  for (let i = 0; i < 100 && pool.getMetrics().totalConnections >= 2; i++) await sleep(10)
  // A query may still meet a connection whose termination has not reached the pool yet and fail: that is the drop.
  await Promise.allSettled(Array.from({ length: 4 }, () => pool.query('SELECT pg_sleep(0.3)')))
  // Then a drop with nobody querying: only the refill can bring the pool back to min.
  await terminate()
  for (let i = 0; i < 100 && (pool.getMetrics().totalConnections < 2 || (await backends(pool.name)) < 2); i++) await sleep(50)
  assert.equal(pool.getMetrics().totalConnections, 2)
  assert.equal(await backends(pool.name), 2)
})

test('a refill opens the missing connections even while another one sits idle', async () => {
  const pool = await open({ min: 3, max: 6 })
  assert.equal(await backends(pool.name), 3)
  // Two of the three idle connections die; one stays idle. pg hands out an idle connection before opening one, so a
  // refill that asked for just the two missing got the idle one back and opened one, or none.
  await admin(`SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid LIMIT 2) AS two`, [pool.name])
  for (let i = 0; i < 100 && (pool.getMetrics().totalConnections < 3 || (await backends(pool.name)) < 3); i++) await sleep(50)
  assert.equal(pool.getMetrics().totalConnections, 3)
  assert.equal(await backends(pool.name), 3)
})

test('pool connections carry TCP keepalive, so a peer that vanished is noticed on an idle connection too', async (t) => {
  // Through a proxy of the test's own, so that the port identifies this pool's sockets among everyone's.
  const proxy = await startFaultProxy({ port: Number(new URL(TEST_DATABASE_URL).port || 5432) })
  t.after(() => proxy.close())
  await open({ connectionString: proxy.rewrite(TEST_DATABASE_URL), min: 2 })
  const sockets = execFileSync('ss', ['-tnoH', 'state', 'established', 'dst', `127.0.0.1:${proxy.port}`]).toString().trim().split('\n')
  assert.equal(sockets.length, 2, sockets.join('\n'))
  for (const line of sockets) assert.match(line, /timer:\(keepalive,/)
})

test('the health check reports a healthy pool; a closed pool refuses queries', async () => {
  const pool = await open()
  const health = await pool.checkHealth()
  assert.equal(health.healthy, true)
  await pool.close()
  await pool.close()
  await assert.rejects(pool.query('SELECT 1'), { code: 'DB_POOL_CLOSED' })
})

test('contradictory options throw one coded error naming each problem', () => {
  assert.throws(() => createConnectionPool({ min: 10, max: 2, idleTimeoutMillis: -1 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'DB_POOL_INVALID_OPTIONS')
    assert.match(e.message, /min \(10\) must not exceed max \(2\)/)
    assert.match(e.message, /idleTimeoutMillis must be a non-negative integer/)
    return true
  })
  assert.throws(() => createConnectionPool({ schema: 'x; DROP TABLE y' }), /schema must be a plain identifier/)
})

test('a connection timeout of 0, which pg-pool reads as never, a timer past what a Node timer holds (it would fire at once), and a listener that would reconnect without backing off are refused at creation', () => {
  const refused = (options: ConnectionPoolOptions, why: RegExp): void => {
    assert.throws(() => createConnectionPool(options), (e: Error & { code: string }) => e.code === 'DB_POOL_INVALID_OPTIONS' && why.test(e.message), JSON.stringify(options))
  }
  refused({ connectionTimeoutMillis: 0 }, /connectionTimeoutMillis must be a positive integer/)
  refused({ connectionTimeoutMillis: 2 ** 31 }, /connectionTimeoutMillis must be at most 2147483647/)
  refused({ queryTimeoutMillis: 2 ** 31 - 100 }, /queryTimeoutMillis must be at most 2147483147/)
  refused({ healthCheckInterval: 3e9 }, /healthCheckInterval must be at most/)
  refused({ replicas: { urls: [], pollMillis: 3e9 } }, /replicas.pollMillis must be a positive integer up to/)
  refused({ listener: { reconnectDelayMs: 0 } }, /listener.reconnectDelayMs must be an integer from 1/)
  refused({ listener: { heartbeatMs: -1 } }, /listener.heartbeatMs must be an integer from 0 \(off\)/)
  refused({ listener: { maxReconnectDelayMs: 0 } }, /listener.maxReconnectDelayMs must be an integer from 1/)
  // The bounds themselves are taken.
  const pool = createConnectionPool({ min: 0, idleTimeoutMillis: 0, connectionTimeoutMillis: 2 ** 31 - 1, queryTimeoutMillis: 2 ** 31 - 1 - 500, healthCheckInterval: 0, listener: { heartbeatMs: 0, reconnectDelayMs: 1, maxReconnectDelayMs: 1 } })
  void pool.close()
})

test('readiness probes of a PostgreSQL that does not answer share one health check: they queue one statement, not one each, ahead of the requests', async (t) => {
  const proxy = await startFaultProxy({ port: Number(new URL(TEST_DATABASE_URL).port || 5432) })
  t.after(() => { proxy.heal(); return proxy.close() })
  const pool = await open({ connectionString: proxy.rewrite(TEST_DATABASE_URL), min: 1, max: 5, queryTimeoutMillis: 1000 })
  proxy.blackhole()
  const probes = Array.from({ length: 20 }, async () => pool.checkHealth())
  await sleep(100)
  const { activeConnections, waitingRequests } = pool.getMetrics()
  // Before, 20 statements: five connections busy and fifteen waiting for one.
  assert.ok(activeConnections + waitingRequests <= 1, JSON.stringify(pool.getMetrics()))
  const results = await Promise.all(probes)
  assert.ok(results.every((h) => !h.healthy))
  proxy.heal()
  assert.equal((await pool.checkHealth()).healthy, true)
})

test('a pool whose every connection is busy answering requests is healthy at once on their answers, not after a SELECT 1 queued behind them; one whose busy connections stopped answering is checked with a statement, as before', async () => {
  const pool = await open({ min: 2, max: 2, queryTimeoutMillis: 5000 })
  // 40 statements of 100 ms on 2 connections: 2 s of queue.
  const load = Array.from({ length: 40 }, async () => pool.query('SELECT pg_sleep(0.1)'))
  await sleep(250)
  const started = performance.now()
  const health = await pool.checkHealth()
  const took = performance.now() - started
  assert.equal(health.healthy, true)
  assert.equal(health.saturated, true)
  // Before, the SELECT 1 waited behind the queue, about 1.5 s more: past a readiness probe's timeout, so every busy
  // instance left the load balancer at once.
  assert.ok(took < 500, `the check took ${took.toFixed(0)} ms`)
  await Promise.all(load)
  // Both connections in statements that do not answer for longer than the evidence lasts.
  const stuck = [pool.query('SELECT pg_sleep(1.8)'), pool.query('SELECT pg_sleep(1.8)')]
  await sleep(1200)
  const checked = pool.checkHealth()
  assert.equal(await Promise.race([checked.then(() => 'answered'), sleep(200).then(() => 'waiting')]), 'waiting', 'a statement waits for a connection')
  await Promise.all(stuck)
  const after = await checked
  assert.equal(after.healthy, true)
  assert.equal(after.saturated, undefined)
})
