import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { createTestSchema, uniqueName, SERVICE_HEADERS } from '../../test/helpers/database.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../../test/helpers/services.js'

test('a lead is scored and routed to the least loaded licensed agent with capacity; every failure has its 4xx', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('orc')}:` }
  const data = await startDataService(t, db, prefix)
  const { app } = await startOrchestrator(t, db, data.url, prefix)
  const [busy, free] = await insertAgents(db, [{ name: 'Busy', capacity: 2 }, { name: 'Free', capacity: 2 }])
  const [l1, l2, l3, l4, l5] = await insertLeads(db, 5)
  const [texan] = await insertLeads(db, 1, 'TX')
  await db.sql("INSERT INTO lead_assignments (lead_id, agent_id) VALUES ($1, $2)", [l5, busy])
  const post = (url: string, payload?: object) => app.inject({ method: 'POST', url, headers: SERVICE_HEADERS, ...(payload ? { payload } : {}) })

  const score = await app.inject({ url: `/orchestrator/v1/leads/${l1}/score`, headers: SERVICE_HEADERS })
  assert.equal(score.statusCode, 200, score.body)
  assert.equal(score.json().score, 15 + 10 + 0 + 5 + 25 + 5)

  const first = await post(`/orchestrator/v1/leads/${l1}/route`)
  assert.equal(first.statusCode, 200, first.body)
  assert.equal(first.json().agentId, free, 'the agent with the lower load')
  assert.equal(first.json().score, score.json().score)
  const [stored] = await db.sql<{ score: number, n: number }>("SELECT l.score, (SELECT count(*)::int FROM lead_activities WHERE lead_id = l.id AND type = 'assigned') AS n FROM leads l WHERE id = $1", [l1])
  assert.deepEqual(stored, { score: score.json().score, n: 1 })

  assert.equal((await post(`/orchestrator/v1/leads/${l1}/route`)).json().code, 'ALREADY_ASSIGNED')
  // Equal loads now: the tie goes to the lower id.
  assert.equal((await post(`/orchestrator/v1/leads/${l2}/route`)).json().agentId, [busy, free].sort()[0])
  assert.equal((await post(`/orchestrator/v1/leads/${l3}/route`)).statusCode, 200)
  const full = await post(`/orchestrator/v1/leads/${l4}/route`)
  assert.equal(full.statusCode, 409)
  assert.equal(full.json().code, 'NO_AGENT_AVAILABLE')
  assert.equal((await post(`/orchestrator/v1/leads/${texan}/route`)).json().code, 'NO_AGENT_AVAILABLE', 'nobody is licensed in TX')
  assert.equal((await post('/orchestrator/v1/leads/00000000-0000-4000-8000-000000000000/route')).statusCode, 404)
  assert.equal((await post('/orchestrator/v1/leads/nope/route')).statusCode, 400)
  assert.equal((await post('/orchestrator/v1/route-batch', { limit: 0 })).statusCode, 400)
  assert.equal((await post('/orchestrator/v1/route-batch', { limit: 5, color: 'red' })).statusCode, 400)
  assert.equal((await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${l4}/route` })).statusCode, 401)
})

test('50 concurrent routing calls over one pool of leads: no lead assigned twice, no agent past its capacity', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('orc')}:`, DB_POOL_MAX: '10' }
  const data = await startDataService(t, db, prefix)
  // Two orchestrator instances, as in production.
  const a = await startOrchestrator(t, db, data.url, prefix)
  const b = await startOrchestrator(t, db, data.url, prefix)
  const agents = await insertAgents(db, [{ name: 'A1', capacity: 7 }, { name: 'A2', capacity: 5 }, { name: 'A3', capacity: 3 }])
  const leads = await insertLeads(db, 30)
  const calls = Array.from({ length: 50 }, (_, i) => {
    const app = i % 2 === 0 ? a.app : b.app
    return i % 5 === 0
      ? app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 10 } })
      : app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${leads[i % leads.length]}/route`, headers: SERVICE_HEADERS })
  })
  const answers = await Promise.all(calls)
  for (const r of answers) assert.ok(r.statusCode === 200 || r.statusCode === 409, `${r.statusCode} ${r.body}`)
  const rows = await db.sql<{ lead_id: string, agent_id: string }>("SELECT lead_id, agent_id FROM lead_assignments WHERE status = 'active'")
  assert.equal(new Set(rows.map((r) => r.lead_id)).size, rows.length, 'no lead twice')
  assert.equal(rows.length, 15, 'every seat filled: 7 + 5 + 3')
  const capacity = [7, 5, 3]
  agents.forEach((id, i) => assert.ok(rows.filter((r) => r.agent_id === id).length <= (capacity[i] ?? 0), `agent ${i + 1} within capacity`))
  const reported = answers.flatMap((r) => {
    const body = r.json()
    return r.statusCode !== 200 ? [] : body.assigned ? body.assigned.map((x: { leadId: string }) => x.leadId) : [body.leadId]
  })
  assert.equal(reported.length, rows.length, 'each assignment answered exactly once')
})

/** Every spelling of an id that the params schema (Ajv's format uuid) accepts. */
function spellings (id: string): string[] {
  const upper = id.toUpperCase()
  return [id, upper, `urn:uuid:${id}`, `URN:UUID:${upper}`, `Urn:Uuid:${id.slice(0, 8).toUpperCase()}${id.slice(8)}`, encodeURIComponent(`urn:uuid:${upper}`)]
}

test('urn:uuid ids on /score and /route answer as the plain id (200 or 404), never 502', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('orc')}:` }
  const data = await startDataService(t, db, prefix)
  const { app } = await startOrchestrator(t, db, data.url, prefix)
  await insertAgents(db, [{ name: 'Urn', capacity: 10 }])
  const ids = await insertLeads(db, spellings('x').length)
  const missing = '0a0a0a0a-0000-4000-8000-00000000000a'
  for (const [i, spelling] of spellings(ids[0] as string).entries()) {
    const score = await app.inject({ url: `/orchestrator/v1/leads/${spelling}/score`, headers: SERVICE_HEADERS })
    assert.equal(score.statusCode, 200, `${spelling}: ${score.body}`)
    assert.equal(score.json().leadId, ids[0])
    const missed = await app.inject({ url: `/orchestrator/v1/leads/${spellings(missing)[i]}/score`, headers: SERVICE_HEADERS })
    assert.equal(missed.statusCode, 404, missed.body)
    assert.equal(missed.json().message, `Lead ${missing} not found`)
  }
  for (const [i, id] of ids.entries()) {
    const spelling = spellings(id)[i] as string
    const routed = await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${spelling}/route`, headers: SERVICE_HEADERS })
    assert.equal(routed.statusCode, 200, `${spelling}: ${routed.body}`)
    assert.equal(routed.json().leadId, id)
    const again = await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${spellings(id)[(i + 1) % 6]}/route`, headers: SERVICE_HEADERS })
    assert.equal(again.json().code, 'ALREADY_ASSIGNED', 'another spelling is the same lead')
  }
  const [n] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM lead_assignments WHERE status = 'active'")
  assert.equal(n?.n, ids.length)
  // The data-service's own lookup takes every spelling too.
  for (const spelling of spellings(ids[0] as string)) {
    const res = await fetch(`${data.url}/data/v1/leads/${spelling}`, { headers: SERVICE_HEADERS })
    assert.equal(res.status, 200, spelling)
    assert.equal((await res.json() as { id: string }).id, ids[0])
  }
})

test('an upstream 400 caused by the caller\'s input is a 400 to the caller, not 502', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // A data-service that refuses every lookup as a bad request, and fails the routing queue outright.
  const upstream = Fastify()
  upstream.get('/data/v1/leads/unassigned', async (_request, reply) => reply.code(500).send({ statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal Server Error' }))
  upstream.get('/data/v1/leads/:id', async (_request, reply) => reply.code(400).send({ statusCode: 400, code: 'VALIDATION_ERROR', error: 'Bad Request', message: 'params/id must match format "uuid"' }))
  const upstreamUrl = await upstream.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => upstream.close())
  const { app } = await startOrchestrator(t, db, upstreamUrl, { CACHE_PREFIX: `${uniqueName('orc')}:`, DATA_SERVICE_RETRIES: '0' })
  const id = '0a0a0a0a-0000-4000-8000-00000000000a'
  for (const res of [
    await app.inject({ url: `/orchestrator/v1/leads/${id}/score`, headers: SERVICE_HEADERS }),
    await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${id}/route`, headers: SERVICE_HEADERS })
  ]) {
    assert.equal(res.statusCode, 400, res.body)
    assert.deepEqual(res.json(), { statusCode: 400, code: 'UPSTREAM_REFUSED_INPUT', error: 'Bad Request', message: 'The data-service refused the request: params/id must match format "uuid"' })
  }
  const batch = await app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 1 } })
  assert.equal(batch.statusCode, 502, 'a 500 of the upstream is not the caller\'s doing')
  assert.equal(batch.json().code, 'UPSTREAM_ERROR')
})

test('a batch that fails on a lead after assigning others answers 200 with the leads it assigned and the lead that stopped it, not an error that hides them', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('orc')}:` }
  const data = await startDataService(t, db, prefix)
  const { app } = await startOrchestrator(t, db, data.url, prefix)
  await insertAgents(db, [{ name: 'Many', capacity: 10 }])
  const leads = await insertLeads(db, 3)
  // PostgreSQL refuses every assignment after the first, as a full disk would.
  await db.sql(`CREATE FUNCTION refuse_second_assignment () RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF (SELECT count(*) FROM lead_assignments) >= 1 THEN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$`)
  await db.sql('CREATE TRIGGER refuse_second_assignment BEFORE INSERT ON lead_assignments FOR EACH ROW EXECUTE FUNCTION refuse_second_assignment()')
  const res = await app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 3 } })
  assert.equal(res.statusCode, 200, res.body)
  const body = res.json<{ assigned: Array<{ leadId: string }>, skipped: unknown[], stopped?: { leadId: string, code: string, message: string } }>()
  const [stored] = await db.sql<{ lead_id: string }>('SELECT lead_id FROM lead_assignments')
  assert.deepEqual(body.assigned.map((a) => a.leadId), [stored?.lead_id], 'the committed assignment is answered')
  assert.ok(body.stopped !== undefined && leads.includes(body.stopped.leadId) && body.stopped.leadId !== stored?.lead_id, JSON.stringify(body.stopped))
  assert.equal(typeof body.stopped.code, 'string')
  assert.doesNotMatch(res.body, /could not extend file/, 'a server fault\'s text is not told')
  // With nothing assigned yet, the failure is the answer.
  const none = await app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 3 } })
  assert.ok(none.statusCode >= 500, none.body)
  assert.equal(none.json().stopped, undefined)
})

test('a data-service 404 that is not its LEAD_NOT_FOUND, or a 200 that is not its JSON, is a 502 UPSTREAM_ERROR, not a missing lead or a 500', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // Another service at DATA_SERVICE_URL: 404 NOT_FOUND for the path; then a proxy's HTML page answered 200.
  let answer: 'not found' | 'html' | 'other shape' = 'not found'
  const upstream = Fastify()
  upstream.get('/*', async (request, reply) => {
    if (answer === 'html') return reply.code(200).type('text/html').send('<html>maintenance</html>')
    // Another version's JSON: snake_case fields, a null in the queue.
    if (answer === 'other shape') return reply.code(200).send(request.url.includes('unassigned') ? { data: [null] } : { id: '0a0a0a0a-0000-4000-8000-00000000000a', first_name: 'A' })
    return reply.code(404).send({ statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'Route GET:/data/v1/leads/x not found' })
  })
  const upstreamUrl = await upstream.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => upstream.close())
  const { app } = await startOrchestrator(t, db, upstreamUrl, { CACHE_PREFIX: `${uniqueName('orc')}:` })
  const id = '0a0a0a0a-0000-4000-8000-00000000000a'
  const calls = async () => [
    await app.inject({ url: `/orchestrator/v1/leads/${id}/score`, headers: SERVICE_HEADERS }),
    await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${id}/route`, headers: SERVICE_HEADERS }),
    await app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 1 } })
  ]
  for (const res of await calls()) {
    assert.equal(res.statusCode, 502, res.body)
    assert.equal(res.json().code, 'UPSTREAM_ERROR')
  }
  for (const kind of ['html', 'other shape'] as const) {
    answer = kind
    for (const res of await calls()) {
      assert.equal(res.statusCode, 502, `${kind}: ${res.body}`)
      assert.deepEqual(res.json(), { statusCode: 502, code: 'UPSTREAM_ERROR', error: 'Bad Gateway', message: 'data-service answered 200: an answer that is not the documented JSON' })
    }
  }
})
