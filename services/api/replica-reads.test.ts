import { test, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { loadApiConfig, type ApiConfig } from './config.js'
import { migrate } from '../domain/migrate.js'
import { SERVICE_HEADERS, TEST_SERVICE_KEY } from '../../test/helpers/database.js'
import { eventually } from '../../test/helpers/eventually.js'
import { buildDataServiceFromEnv } from '../../test/helpers/services.js'
import { startStreamingReplica, type StreamingReplica } from '../../test/helpers/replica.js'

let cluster: StreamingReplica
let replicaUrl: string

before(async () => {
  cluster = await startStreamingReplica()
  await migrate({ databaseUrl: cluster.primary.url })
  await cluster.replica.catchUp()
  // A password in the URL (trust auth ignores it) must reach no label, log or admin view.
  replicaUrl = cluster.replica.url.replace('postgres@', 'postgres:s3cret-replica-pw@')
})

after(() => cluster?.destroy())

async function api (t: TestContext, env: Record<string, string>): Promise<FastifyInstance> {
  const config = loadApiConfig({
    dotenv: false,
    env: { SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', DATABASE_URL: cluster.primary.url, DB_POOL_MIN: '1', DB_POOL_MAX: '8', LOG_LEVEL: 'silent', ...env }
  }) as ApiConfig
  const app = await buildApp(config)
  t.after(() => app.close())
  return app
}

async function delayReplay (t: TestContext, ms: number): Promise<void> {
  await cluster.replica.setApplyDelay(ms)
  t.after(async () => { await cluster.replica.setApplyDelay(0); await cluster.replica.catchUp() })
}

let serial = 0
async function createLead (app: FastifyInstance): Promise<string> {
  serial++
  const res = await app.inject({ method: 'POST', url: '/api/v1/leads', headers: SERVICE_HEADERS, payload: { firstName: 'Ann', lastName: 'Lee', email: `ann.${serial}.${process.pid}@example.com`, product: 'auto', state: 'CA' } })
  assert.equal(res.statusCode, 201)
  return res.json().id as string
}

function readsOf (metrics: string, target: string, reason: string): number {
  const m = new RegExp(`^db_reads_total\\{target="${target}",reason="${reason}",service="api"\\} (\\d+)$`, 'm').exec(metrics)
  return Number(m?.[1] ?? 0)
}

test('the leads GET routes read from the replica (DATABASE_REPLICA_URLS): a lead it has not replayed is found only with its position', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '5000' })
  const primaryOnly = await api(t, {})
  await delayReplay(t, 3000)
  const [lead] = await cluster.primary.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('Bo', 'Ray', 'bo.replica@example.com', 'home', 'TX') RETURNING id")
  const [{ lsn }] = await cluster.primary.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn') as [{ lsn: string }]
  const id = lead?.id as string
  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ url, headers: { ...SERVICE_HEADERS, ...headers } })

  assert.equal((await get(`/api/v1/leads/${id}`)).statusCode, 404, 'the replica, 3 s behind, has not got it yet')
  assert.ok(!(await get('/api/v1/leads?limit=100')).json().data.some((l: { id: string }) => l.id === id))
  for (const bad of ['garbage', '1/2/3', 'FFFFFFFFF/0', '']) {
    assert.equal((await get(`/api/v1/leads/${id}`, { 'x-read-after-lsn': bad })).statusCode, 404, `"${bad}" is ignored, not an error`)
  }
  assert.equal((await get(`/api/v1/leads/${id}`, { 'x-read-after-lsn': lsn })).statusCode, 200, 'with its position the read waits for the replay')
  assert.ok((await get('/api/v1/leads?limit=100', { 'x-read-after-lsn': lsn })).json().data.some((l: { id: string }) => l.id === id))
  const metrics = (await app.inject('/metrics')).body
  assert.ok(readsOf(metrics, 'replica', 'waited') + readsOf(metrics, 'replica', 'caught_up') >= 2, metrics)
  assert.equal((await primaryOnly.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })).statusCode, 200, 'without replicas every read is the primary\'s')
})

test('a PATCH followed at once by a GET presenting its X-Read-After-LSN is never stale, over 50 iterations', async (t) => {
  await delayReplay(t, 2000)
  // Shorter than the delay: the reads are the primary's (the bounded wait); then longer: the replica's, after the wait.
  for (const [wait, iterations, concurrency] of [['300', 50, 1], ['5000', 20, 10]] as const) {
    const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: wait })
    let staleWithoutPosition = 0
    const iteration = async (i: number): Promise<void> => {
      const id = await createLead(app)
      const patch = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS, payload: { score: 10 + i } })
      assert.equal(patch.statusCode, 200)
      const position = patch.headers['x-read-after-lsn']
      assert.match(String(position), /^[0-9A-F]+\/[0-9A-F]+$/)
      const [one, list, blind] = await Promise.all([
        app.inject({ url: `/api/v1/leads/${id}`, headers: { ...SERVICE_HEADERS, 'x-read-after-lsn': String(position) } }),
        app.inject({ url: '/api/v1/leads?limit=100&sort=-createdAt', headers: { ...SERVICE_HEADERS, 'x-read-after-lsn': String(position) } }),
        app.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })
      ])
      assert.equal(one.statusCode, 200)
      assert.equal(one.json().score, 10 + i, `iteration ${i}: the GET by id saw the PATCH`)
      assert.equal(list.json().data.find((l: { id: string }) => l.id === id)?.score, 10 + i, `iteration ${i}: the list saw the PATCH`)
      if (blind.statusCode !== 200 || blind.json().score !== 10 + i) staleWithoutPosition++
    }
    for (let i = 0; i < iterations; i += concurrency) await Promise.all(Array.from({ length: concurrency }, (_, k) => iteration(i + k)))
    assert.ok(staleWithoutPosition > 0, 'without the position, the lagging replica does answer stale (the lag is real)')
    const metrics = (await app.inject('/metrics')).body
    if (wait === '300') assert.ok(readsOf(metrics, 'primary', 'lagging') >= 2 * iterations, metrics)
    else assert.ok(readsOf(metrics, 'replica', 'waited') + readsOf(metrics, 'replica', 'caught_up') >= 2 * iterations, metrics)
  }
})

test('with the cache on, a fill after a PATCH stores the new lead, even when a caller without the position asks', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '5000', CACHE_ENABLED: 'true', CACHE_PREFIX: `replica-${process.pid}:` })
  await delayReplay(t, 2000)
  const id = await createLead(app)
  const patch = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS, payload: { score: 55 } })
  assert.equal(patch.statusCode, 200)
  const [blind, list] = await Promise.all([
    app.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS }),
    app.inject({ url: '/api/v1/leads?limit=100&sort=-createdAt', headers: SERVICE_HEADERS })
  ])
  assert.equal(blind.json().score, 55, 'the fill waited for the primary\'s position')
  assert.equal(list.json().data.find((l: { id: string }) => l.id === id)?.score, 55)
  assert.equal((await app.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })).json().score, 55, 'and the cache holds it')
})

test('the data-service answers another service\'s lead lookup with every committed write, even from a lagging replica', async (t) => {
  const data = await buildDataServiceFromEnv({
    SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', DATABASE_URL: cluster.primary.url, DB_POOL_MIN: '1', LOG_LEVEL: 'silent', DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '5000'
  })
  t.after(() => data.close())
  await delayReplay(t, 2000)
  const [lead] = await cluster.primary.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('Cy', 'Oh', 'cy.replica@example.com', 'auto', 'NY') RETURNING id")
  const res = await data.inject({ url: `/data/v1/leads/${lead?.id as string}`, headers: SERVICE_HEADERS })
  assert.equal(res.statusCode, 200, 'an event about a lead the replica has not replayed finds the lead')
  assert.equal(data.db.getMetrics().replicas?.reads.find((r) => r.target === 'replica' && r.reason === 'waited')?.count, 1)
})

test('the wait is bounded: with DB_REPLICA_WAIT_MS shorter than the replay delay, the read goes to the primary', async (t) => {
  await delayReplay(t, 2000)
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '200' })
  const id = await createLead(app)
  const patch = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS, payload: { score: 77 } })
  const started = performance.now()
  const res = await app.inject({ url: `/api/v1/leads/${id}`, headers: { ...SERVICE_HEADERS, 'x-read-after-lsn': String(patch.headers['x-read-after-lsn']) } })
  const took = performance.now() - started
  assert.equal(res.json().score, 77)
  assert.ok(took >= 190 && took < 1500, `answered after the 200 ms wait, well before the 2 s replay: ${took.toFixed(0)} ms`)
  assert.equal(readsOf((await app.inject('/metrics')).body, 'primary', 'lagging'), 1)
})

test('replica lag and routing in /metrics and the pool admin route, with no credentials', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_HEALTH_CHECK_INTERVAL: '100' })
  await app.inject({ url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })
  await eventually(async () => /^db_replica_lag_seconds\{replica="replica-1",service="api"\} 0$/m.test((await app.inject('/metrics')).body), 'a caught-up replica lags 0 s', 5000)
  await delayReplay(t, 3000)
  await createLead(app)
  await eventually(async () => {
    const m = /^db_replica_lag_seconds\{replica="replica-1",service="api"\} ([\d.e+-]+)$/m.exec((await app.inject('/metrics')).body)
    return Number(m?.[1]) > 0.5
  }, 'a replica behind on a write lags more than 0.5 s', 5000)
  const metrics = (await app.inject('/metrics')).body
  assert.match(metrics, /^db_replica_up\{replica="replica-1",service="api"\} 1$/m)
  assert.ok(readsOf(metrics, 'replica', 'any') >= 1)
  const pool = (await app.inject({ url: '/api/v1/admin/pool', headers: SERVICE_HEADERS })).json()
  assert.equal(pool.replicas.states[0].name, 'replica-1')
  assert.equal(pool.replicas.states[0].address, `127.0.0.1:${cluster.replica.port}/postgres`)
  assert.equal(pool.replicas.states[0].healthy, true)
  for (const body of [metrics, JSON.stringify(pool)]) assert.ok(!body.includes('s3cret-replica-pw'))
})

test('DB_REPLICA_POOL_MAX=2 opens at most two connections to the replica under six concurrent reads', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_POOL_MAX: '2' })
  let most = 0
  let running = true
  const watch = (async () => {
    while (running) {
      const [row] = await cluster.replica.sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'main-replica-1'")
      most = Math.max(most, row?.n ?? 0)
      await sleep(20)
    }
  })()
  const started = performance.now()
  await Promise.all(Array.from({ length: 6 }, () => app.db.query('SELECT pg_sleep(0.2)', [], { read: true })))
  const took = performance.now() - started
  running = false
  await watch
  assert.equal(most, 2)
  assert.ok(took >= 550, `six 200 ms reads over two connections take three rounds: ${took.toFixed(0)} ms`)
})

test('DB_REPLICA_HEALTH_CHECK_INTERVAL=100 notices a stopped replica without any read, and its return', async (t) => {
  const checked = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_HEALTH_CHECK_INTERVAL: '100' })
  const unchecked = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_HEALTH_CHECK_INTERVAL: '0' })
  const healthy = (app: FastifyInstance): boolean | undefined => app.db.getMetrics().replicas?.states[0]?.healthy
  assert.equal(healthy(checked), true)
  cluster.replica.stop('fast')
  try {
    await eventually(() => healthy(checked) === false, 'the check marks the stopped replica unhealthy', 3000)
    assert.equal(healthy(unchecked), true, 'with no periodic check, only a failed read would tell')
  } finally {
    cluster.replica.start()
  }
  await eventually(() => healthy(checked) === true, 'the check sees it back', 5000)
})

test('a replica stopped under a stream of GETs fails no request', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_HEALTH_CHECK_INTERVAL: '100' })
  const id = await createLead(app)
  const seen = new Map<number, number>()
  let running = true
  const worker = async (k: number): Promise<void> => {
    while (running) {
      const res = await app.inject({ url: k % 2 === 0 ? '/api/v1/leads?limit=5' : `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })
      seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
    }
  }
  const workers = Array.from({ length: 8 }, (_, k) => worker(k))
  const served = (): number => app.db.getMetrics().replicas?.reads.reduce((n, r) => n + r.count, 0) ?? 0
  try {
    await eventually(() => served() >= 20, 'the replica serves GETs before it stops', 10_000)
    cluster.replica.stop('immediate')
    const stoppedAt = served()
    await eventually(() => served() >= stoppedAt + 50, 'GETs go on after the stop', 10_000)
  } finally {
    running = false
    await Promise.all(workers)
    cluster.replica.start()
  }
  assert.deepEqual([...seen.keys()], [200], `answers: ${[...seen.entries()].join(', ')}`)
  const metrics = (await app.inject('/metrics')).body
  assert.ok(readsOf(metrics, 'replica', 'any') > 0, 'the replica served before it stopped')
  assert.ok(readsOf(metrics, 'primary', 'replica_failed') + readsOf(metrics, 'primary', 'no_healthy_replica') > 0, 'the primary served after')
})

test('a GET that only reads (a lead, its activities) carries no X-Read-After-LSN, as it read no position from the primary; a write\'s answer carries one', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '5000' })
  const id = await createLead(app)
  for (const url of [`/api/v1/leads/${id}`, `/api/v1/leads/${id}/activities`]) {
    const res = await app.inject({ url, headers: SERVICE_HEADERS })
    assert.equal(res.statusCode, 200, res.body)
    // Before, the activities' read was taken for a write: its answer carried a position read from the primary.
    assert.equal(res.headers['x-read-after-lsn'], undefined, url)
  }
  const patched = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS, payload: { status: 'contacted' } })
  assert.equal(patched.statusCode, 200)
  assert.match(String(patched.headers['x-read-after-lsn']), /^[0-9A-F]+\/[0-9A-F]+$/)
})

test('a made-up X-Read-After-LSN past any position of the primary does not hold a cache fill, nor the readers sharing it, for DB_REPLICA_WAIT_MS', async (t) => {
  const app = await api(t, { DATABASE_REPLICA_URLS: replicaUrl, DB_REPLICA_WAIT_MS: '3000', CACHE_ENABLED: 'true', CACHE_PREFIX: `replica-lsn-${process.pid}:` })
  const id = await createLead(app)
  await cluster.replica.catchUp()
  const started = performance.now()
  const [forged, plain] = await Promise.all([
    app.inject({ url: `/api/v1/leads/${id}`, headers: { ...SERVICE_HEADERS, 'x-read-after-lsn': 'FFFFFFFF/FFFFFFFF' } }),
    app.inject({ url: `/api/v1/leads/${id}`, headers: SERVICE_HEADERS })
  ])
  const took = performance.now() - started
  assert.deepEqual([forged.statusCode, plain.statusCode], [200, 200])
  // Before, the fill waited for the replica to reach the made-up position, 3 s, and so did the reader sharing it.
  assert.ok(took < 1500, `answered after ${Math.round(took)} ms`)
})

test('an answer of 5xx after its request committed writes (an import stopped part-way) still carries their position', async (t) => {
  const data = await buildDataServiceFromEnv({
    SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', DATABASE_URL: cluster.primary.url, DB_POOL_MIN: '1', LOG_LEVEL: 'silent', DATABASE_REPLICA_URLS: replicaUrl, IMPORT_BATCH_SIZE: '10'
  })
  t.after(() => data.close())
  const stop = `stop.${process.pid}@example.com`
  // Not a refusal of the row's data (P0001): the import cannot go on, and answers 503 with the batches it committed.
  await cluster.primary.sql(`CREATE OR REPLACE FUNCTION stop_replica_import() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.email = '${stop}' THEN RAISE EXCEPTION 'stopped'; END IF; RETURN NEW; END $$`)
  await cluster.primary.sql('CREATE TRIGGER stop_replica_import BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION stop_replica_import()')
  t.after(async () => { await cluster.primary.sql('DROP TRIGGER stop_replica_import ON leads') })
  const rows = Array.from({ length: 25 }, (_, i) => JSON.stringify({ firstName: 'Im', lastName: 'Port', email: i === 20 ? stop : `imp.${i}.${process.pid}@example.com`, product: 'life', state: 'NY' }))
  const res = await data.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' }, payload: rows.join('\n') })
  assert.equal(res.statusCode, 503, res.body)
  assert.equal(res.json().report.inserted, 20)
  // Before, a 5xx went without: a reader after it could be sent to a replica that had not replayed the 20 leads.
  assert.match(String(res.headers['x-read-after-lsn']), /^[0-9A-F]+\/[0-9A-F]+$/)
})
