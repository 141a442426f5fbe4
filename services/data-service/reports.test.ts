import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createTestSchema, testEnv, uniqueName, SERVICE_HEADERS } from '../../test/helpers/database.js'
import { buildTestApi } from '../../test/helpers/services.js'
import { buildDataService } from './app.js'
import { loadDataServiceConfig } from './config.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const today = new Date().toISOString().slice(0, 10)

test('reports are cached, and a change through any service invalidates exactly the reports and lists it affects', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // Both services share Redis and the cache prefix, as they do in production.
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('rep')}:` }
  const data = await buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, env) }))
  t.after(() => data.close())
  const api = await buildTestApi(db, env)
  t.after(() => api.close())
  await db.sql("INSERT INTO leads (first_name, last_name, email, product, state, status) VALUES ('A', 'B', 'a@x.co', 'auto', 'CA', 'new'), ('C', 'D', 'c@x.co', 'home', 'TX', 'converted')")
  const get = (url: string) => data.inject({ url, headers: SERVICE_HEADERS })

  const first = await get('/data/v1/reports/leads?groupBy=product')
  assert.equal(first.statusCode, 200, first.body)
  assert.equal(first.headers['x-cache'], 'MISS')
  assert.deepEqual(first.json().groups, [{ key: 'auto', count: 1 }, { key: 'home', count: 1 }])
  assert.equal((await get('/data/v1/reports/leads?groupBy=product')).headers['x-cache'], 'HIT-LOCAL')
  const funnel = (await get('/data/v1/reports/funnel')).json()
  assert.deepEqual(funnel.stages.map((s: { count: number }) => s.count), [2, 1, 1, 1])
  assert.equal(funnel.stages[3].rate, 0.5)
  const list = await api.inject({ url: '/api/v1/leads?product=auto', headers: SERVICE_HEADERS })
  assert.equal(list.json().data.length, 1)

  // An import through the data-service: the report and the api's cached list both see it at once.
  const imported = await data.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv' }, payload: 'firstName,lastName,email,product,state\nE,F,e@x.co,auto,NY\n' })
  assert.equal(imported.json().inserted, 1)
  const after = await get('/data/v1/reports/leads?groupBy=product')
  assert.equal(after.headers['x-cache'], 'MISS')
  assert.deepEqual(after.json().groups[0], { key: 'auto', count: 2 })
  assert.equal((await api.inject({ url: '/api/v1/leads?product=auto', headers: SERVICE_HEADERS })).json().data.length, 2)

  // A PATCH through the api invalidates the data-service's lead reports too.
  const [lead] = await db.sql<{ id: string }>("SELECT id FROM leads WHERE email = 'a@x.co'")
  const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead?.id}`, headers: SERVICE_HEADERS, payload: { status: 'converted' } })
  assert.equal(patched.statusCode, 200)
  const funnelAfter = await get('/data/v1/reports/funnel')
  assert.equal(funnelAfter.headers['x-cache'], 'MISS')
  assert.equal(funnelAfter.json().stages[3].count, 2)
})

test('report parameters are validated: 400 with a clear code', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const data = await buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, { CACHE_PREFIX: `${uniqueName('rep')}:` }) }))
  t.after(() => data.close())
  const get = (url: string) => data.inject({ url, headers: SERVICE_HEADERS })
  assert.equal((await get('/data/v1/reports/leads?groupBy=color')).statusCode, 400)
  assert.equal((await get('/data/v1/reports/leads?from=2026-13-01')).statusCode, 400)
  const backwards = await get(`/data/v1/reports/funnel?from=${today}&to=2020-01-01`)
  assert.equal(backwards.statusCode, 400)
  assert.equal(backwards.json().code, 'INVALID_RANGE')
  assert.equal((await get('/data/v1/reports/agents?from=2020-01-01&to=2026-01-01')).json().code, 'INVALID_RANGE')
  assert.equal((await data.inject({ url: '/data/v1/reports/agents' })).statusCode, 401)
  const agents = await get('/data/v1/reports/agents')
  assert.equal(agents.statusCode, 200)
  assert.deepEqual(agents.json().agents, [])
  assert.equal((await get('/data/v1/leads/not-a-uuid')).statusCode, 400)
  assert.equal((await get('/data/v1/leads/00000000-0000-4000-8000-000000000000')).statusCode, 404)
  assert.equal((await get('/data/v1/leads/unassigned?limit=0')).statusCode, 400)
})

test('a report date of year 0000 or one not on the calendar is refused by validation naming the field, not by the database (DB_INVALID_INPUT)', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const data = await buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, { CACHE_PREFIX: `${uniqueName('rep')}:` }) }))
  t.after(() => data.close())
  const get = (url: string) => data.inject({ url, headers: SERVICE_HEADERS })
  // PostgreSQL has no year 0; JavaScript and RFC 3339 do. February 30th and April 31st are on no calendar.
  const refused: Array<[string, string]> = [
    ['leads?from=0000-01-01&to=0000-01-05', 'from'], ['funnel?from=0001-01-01&to=0000-12-31', 'to'], ['agents?to=0000-06-01', 'to'],
    ['leads?from=2026-02-30&to=2026-03-01', 'from'], ['funnel?from=2026-02-01&to=2026-02-29', 'to'], ['agents?from=2025-04-31', 'from']
  ]
  for (const [url, field] of refused) {
    const res = await get(`/data/v1/reports/${url}`)
    assert.equal(res.statusCode, 400, `${url}: ${res.body}`)
    assert.deepEqual([res.json().code, res.json().message], ['VALIDATION_ERROR', `querystring/${field} must match format "date"`], url)
  }
  // The first and last days both hold, and a default range that would start before the first day starts on it.
  for (const url of ['leads?from=0001-01-01&to=0001-01-01', 'funnel?from=9999-12-31&to=9999-12-31', 'agents?from=2024-02-29&to=2024-03-01']) {
    assert.equal((await get(`/data/v1/reports/${url}`)).statusCode, 200, url)
  }
  const early = await get('/data/v1/reports/leads?to=0001-01-10')
  assert.equal(early.statusCode, 200, early.body)
  assert.deepEqual([early.json().from, early.json().to], ['0001-01-01', '0001-01-10'])
})

/** Every node of a JSON plan, depth first. */
function planNodes (node: Record<string, unknown>): Array<Record<string, unknown>> {
  return [node, ...((node.Plans as Array<Record<string, unknown>> | undefined) ?? []).flatMap(planNodes)]
}

test('the agents report over a short range reads the assignments of that range by index, not every assignment ever made', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // A year and more of history: 40 agents, 60,000 leads, each assigned once at a time of its own.
  await db.sql(`INSERT INTO agents (name, email) SELECT 'Agent ' || i, 'agent' || i || '@agents.example' FROM generate_series(1, 40) AS i`)
  await db.sql(`INSERT INTO leads (first_name, last_name, email, product, state) SELECT 'L', 'N' || i, 'l' || i || '@example.com', 'auto', 'CA' FROM generate_series(1, 60000) AS i`)
  await db.sql(`INSERT INTO lead_assignments (lead_id, agent_id, status, assigned_at)
    SELECT l.id, a.id, 'completed', now() - (n % 400) * interval '1 day' - (n % 997) * interval '1 minute'
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM leads) l
      JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM agents) a ON a.k = l.n % 40`)
  await db.sql('ANALYZE agents, leads, lead_assignments')
  // The repository's own statement, explained: its pool runs EXPLAIN in front of what it is asked.
  const { createConnectionPool } = await import('@lead-chassis/plugins/db-pool')
  const { ReportsRepository } = await import('./reports-repository.js')
  const pool = createConnectionPool({ connectionString: db.url, schema: db.schema, min: 0, max: 1, healthCheckInterval: 0 })
  t.after(() => pool.close())
  let plan: Record<string, unknown> | undefined
  const explaining = { query: async (sql: string, params: unknown[]) => {
    const { rows } = await pool.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, unknown> }> }>(`EXPLAIN (FORMAT JSON) ${sql}`, params)
    plan = rows[0]?.['QUERY PLAN'][0]?.Plan
    return { rows: [] }
  } }
  await new ReportsRepository(explaining as never).agentPerformance({ from: today, to: today })
  assert.ok(plan, 'explained')
  const scans = planNodes(plan).filter((n) => n['Relation Name'] === 'lead_assignments')
  // Before, a sequential scan of every assignment, whatever the range: a caller with reports:read could make each
  // report (cached per range) read the whole history.
  assert.ok(scans.length > 0 && scans.every((n) => n['Node Type'] !== 'Seq Scan'), JSON.stringify(scans.map((n) => [n['Node Type'], n['Index Name']])))
})
