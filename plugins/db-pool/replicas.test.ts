import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { createConnectionPool, dbPoolPlugin, type ConnectionPool, type ConnectionPoolOptions, type ReadReason } from './index.js'
import { startStreamingReplica, type StreamingReplica } from '../../test/helpers/replica.js'
import { eventually } from '../../test/helpers/eventually.js'
import { freePort } from '../../test/helpers/ports.js'
import { startFaultProxy } from '../../test/helpers/fault-proxy.js'

let cluster: StreamingReplica
const pools: ConnectionPool[] = []

before(async () => {
  cluster = await startStreamingReplica()
  await cluster.primary.sql('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)')
  await cluster.replica.catchUp()
})

after(async () => {
  await Promise.all(pools.map((p) => p.close()))
  cluster?.destroy()
})

async function pool (urls: string[], options: ConnectionPoolOptions = {}): Promise<ConnectionPool> {
  const p = createConnectionPool({ connectionString: cluster.primary.url, min: 1, max: 4, ...options, replicas: { healthCheckInterval: 100, ...options.replicas, urls } })
  pools.push(p)
  await p.start()
  return p
}

async function inRecovery (p: ConnectionPool, read: boolean): Promise<boolean> {
  const { rows } = await p.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery', [], { read })
  return rows[0]?.recovery as boolean
}

function reads (p: ConnectionPool, target: 'replica' | 'primary', reason: ReadReason): number {
  return p.getMetrics().replicas?.reads.find((r) => r.target === target && r.reason === reason)?.count ?? 0
}

test('marked reads run on the replica; writes and unmarked statements on the primary', async () => {
  const p = await pool([cluster.replica.url])
  for (let i = 0; i < 5; i++) assert.equal(await inRecovery(p, true), true, 'a marked read ran on a server in recovery')
  assert.equal(await inRecovery(p, false), false, 'an unmarked statement ran on the primary')
  assert.equal((await p.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], { read: 'primary' })).rows[0]?.r, false)
  assert.equal(await p.transaction(async (tx) => (await tx.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r, { read: true }), true)
  assert.equal(await p.transaction(async (tx) => {
    await tx.query("INSERT INTO notes (body) VALUES ('w')")
    return (await tx.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r
  }), false)
  assert.equal(reads(p, 'replica', 'any'), 6)
  const [state] = p.getMetrics().replicas?.states ?? []
  assert.equal(state?.name, 'replica-1')
  assert.equal(state?.healthy, true)
  assert.match(state?.replayLsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/)
})

test('a replica failing its check is skipped; with none healthy, marked reads go to the primary', async () => {
  const dead = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`
  // The primary named as a replica answers, but is not in recovery: it cannot say what it has replayed.
  const p = await pool([dead, cluster.primary.url, cluster.replica.url], { replicas: { urls: [], healthCheckInterval: 0 } })
  const states = p.getMetrics().replicas?.states ?? []
  assert.deepEqual(states.map((s) => s.healthy), [false, false, true])
  assert.match(states[1]?.error ?? '', /not in recovery/)
  for (let i = 0; i < 12; i++) assert.equal(await inRecovery(p, true), true, 'only the healthy replica serves reads')

  const none = await pool([dead, cluster.primary.url])
  for (let i = 0; i < 4; i++) assert.equal(await inRecovery(none, true), false)
  assert.equal(reads(none, 'primary', 'no_healthy_replica'), 4)
})

test('within a request, a read after a write sees it: the replica once it has replayed it, the primary past the wait', async (t) => {
  await cluster.replica.setApplyDelay(1000)
  t.after(async () => { await cluster.replica.setApplyDelay(0); await cluster.replica.catchUp() })
  for (const waitMillis of [5000, 0]) {
    const app = Fastify()
    await app.register(dbPoolPlugin, { connectionString: cluster.primary.url, min: 1, max: 4, replicas: { urls: [cluster.replica.url], waitMillis, healthCheckInterval: 100 } })
    app.post('/notes', async (request) => {
      const { rows: [note] } = await app.db.query<{ id: number }>('INSERT INTO notes (body) VALUES ($1) RETURNING id', [request.id])
      const { rows } = await app.db.query('SELECT body FROM notes WHERE id = $1', [note?.id], { read: true })
      return { found: rows.length }
    })
    app.get('/notes', async () => {
      await app.db.query('SELECT 1', [], { read: 'primary' })
      return (await app.db.query('SELECT count(*)::int AS n FROM notes', [], { read: true })).rows[0]
    })
    t.after(() => app.close())
    const readOnly = await app.inject('/notes')
    assert.equal(readOnly.headers['x-read-after-lsn'], undefined, 'a request that only read carries no position')
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'POST', url: '/notes' })
      assert.equal(res.json().found, 1, `waitMillis ${waitMillis}: the read saw the request's own write`)
      assert.match(String(res.headers['x-read-after-lsn']), /^[0-9A-F]+\/[0-9A-F]+$/, 'a request that wrote answers with its position')
    }
    if (waitMillis > 0) assert.equal(reads(app.db, 'replica', 'waited'), 3, 'the replica served the reads once it had replayed')
    else assert.equal(reads(app.db, 'primary', 'lagging'), 3, 'without a wait, the primary served them')
  }
})

test('a replica stopped under a stream of reads fails no read, and serves again once it is back', async () => {
  const p = await pool([cluster.replica.url], { replicas: { urls: [], healthCheckInterval: 100 } })
  let running = true
  let done = 0
  const failures: string[] = []
  const worker = async (): Promise<void> => {
    while (running) {
      try {
        await p.query('SELECT count(*) FROM notes', [], { read: true })
        done++
      } catch (error) {
        failures.push((error as Error).message)
      }
    }
  }
  const workers = Array.from({ length: 8 }, worker)
  try {
    await eventually(() => reads(p, 'replica', 'any') >= 20, 'the replica serves reads before it stops', 10_000)
    cluster.replica.stop('immediate')
    const stoppedAt = done
    await eventually(() => done >= stoppedAt + 50, 'reads go on after the stop', 10_000)
  } finally {
    running = false
    await Promise.all(workers)
  }
  assert.deepEqual(failures, [])
  assert.ok(reads(p, 'primary', 'replica_failed') + reads(p, 'primary', 'no_healthy_replica') > 0, 'the primary took over')
  assert.equal(p.getMetrics().replicas?.states[0]?.healthy, false)

  cluster.replica.start()
  await eventually(() => p.getMetrics().replicas?.states[0]?.healthy === true, 'the replica is healthy again', 10_000)
  assert.equal(await inRecovery(p, true), true)
})

test('a replica that stops answering (a partition) costs a read at most the wait or the query bound, then the primary answers', async (t) => {
  const proxy = await startFaultProxy({ port: cluster.replica.port })
  t.after(() => proxy.close())
  const app = Fastify()
  await app.register(dbPoolPlugin, { connectionString: cluster.primary.url, min: 1, max: 4, queryTimeoutMillis: 1000, replicas: { urls: [proxy.rewrite(cluster.replica.url)], waitMillis: 300, healthCheckInterval: 0 } })
  app.get('/count', async () => (await app.db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], { read: true })).rows[0])
  t.after(() => app.close())
  assert.equal((await app.inject('/count')).json().r, true, 'the replica answers before the partition')

  await cluster.primary.sql("INSERT INTO notes (body) VALUES ('partition')")
  const [{ lsn }] = await cluster.primary.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn') as [{ lsn: string }]
  proxy.blackhole()
  // Must see a write: the poll of the silent replica hangs, the wait does not.
  let started = performance.now()
  const waited = await app.inject({ url: '/count', headers: { 'x-read-after-lsn': lsn } })
  assert.equal(waited.json().r, false)
  assert.ok(performance.now() - started < 1000, `answered by the primary after the 300 ms wait: ${(performance.now() - started).toFixed(0)} ms`)
  assert.equal(reads(app.db, 'primary', 'lagging'), 1)
  // Nothing to wait for: the replica is tried, fails within the query bound, and the primary answers.
  started = performance.now()
  assert.equal((await app.inject('/count')).json().r, false)
  assert.ok(performance.now() - started < 3000, `within the 1 s query bound plus the primary's answer: ${(performance.now() - started).toFixed(0)} ms`)
  assert.equal(reads(app.db, 'primary', 'replica_failed'), 1)
  assert.equal(app.db.getMetrics().replicas?.states[0]?.healthy, false, 'and it is skipped from then on')
  proxy.heal()
})

test('after an idle spell, a replica one write behind reads as lagging since its last caught-up check, not for the whole spell', async (t) => {
  const p = await pool([cluster.replica.url], { replicas: { urls: [], healthCheckInterval: 0 } })
  await p.query("INSERT INTO notes (body) VALUES ('before the spell')")
  await cluster.replica.catchUp()
  assert.equal((await p.checkReplicas())[0]?.lagSeconds, 0, 'caught up')
  // No commit for 3 s: the replica's last replayed transaction gets old, which is not lag while nothing is missing.
  await new Promise((resolve) => setTimeout(resolve, 3000))
  assert.equal((await p.checkReplicas())[0]?.lagSeconds, 0, 'idle and caught up')
  await cluster.replica.sql('SELECT pg_wal_replay_pause()')
  t.after(() => cluster.replica.sql('SELECT pg_wal_replay_resume()'))
  await p.query("INSERT INTO notes (body) VALUES ('after the spell')")
  const [state] = await p.checkReplicas()
  assert.ok(state?.lagSeconds !== undefined && state.lagSeconds > 0, `behind: ${state?.lagSeconds}`)
  // It was caught up at the check just before the write: it cannot be more behind than the time since then.
  assert.ok(state.lagSeconds < 1, `lag ${state.lagSeconds} s: the idle spell counted as lag`)
  await cluster.replica.sql('SELECT pg_wal_replay_resume()')
  await cluster.replica.catchUp()
  assert.equal((await p.checkReplicas())[0]?.lagSeconds, 0, 'caught up again')
})
