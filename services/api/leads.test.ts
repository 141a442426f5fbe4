import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { tracingChannel } from 'node:diagnostics_channel'
import { QUERY_CHANNEL_NAME } from '@lead-chassis/plugins/db-pool'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig, type TestSchema } from '../../test/helpers/database.js'
import { seed } from '../domain/seed.js'

let db: TestSchema
let app: FastifyInstance
let api: ReturnType<typeof authed<FastifyInstance>>

const newLead = (over: Record<string, unknown> = {}) => ({
  firstName: 'Ann', lastName: 'Lee', email: `ann.${Math.random().toString(36).slice(2)}@example.com`, phone: '+1 (555) 123-4567', product: 'auto', state: 'CA', ...over
})

before(async () => {
  db = await createTestSchema()
  await seed({ databaseUrl: db.url, schema: db.schema, count: 500, agents: 5, seed: 42 })
  app = await buildApp(testApiConfig(db))
  api = authed(app)
})

after(async () => {
  await app?.close()
  await db?.drop()
})

test('GET /api/v1/leads lists newest first with a default page of 20', async () => {
  const res = await api.inject('/api/v1/leads')
  assert.equal(res.statusCode, 200)
  const body = res.json()
  assert.equal(body.data.length, 20)
  assert.equal(typeof body.nextCursor, 'string')
  const times = body.data.map((l: { createdAt: string }) => Date.parse(l.createdAt))
  assert.deepEqual(times, [...times].sort((a, b) => b - a))
})

test('filters combine: status, product, state and minimum score', async () => {
  const res = await api.inject('/api/v1/leads?status=new&product=auto&minScore=50&limit=100')
  assert.equal(res.statusCode, 200)
  const { data } = res.json()
  assert.ok(data.length > 0)
  for (const lead of data) {
    assert.equal(lead.status, 'new')
    assert.equal(lead.product, 'auto')
    assert.ok(lead.score >= 50)
  }
  const [expected] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE status = 'new' AND product = 'auto' AND score >= 50")
  assert.equal(data.length, Math.min(100, expected?.n ?? 0))
  const byState = (await api.inject('/api/v1/leads?state=CA&limit=100')).json().data
  for (const lead of byState) assert.equal(lead.state, 'CA')
})

test('keyset pages walk every row exactly once, in each sort order', async () => {
  const [total] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE product = 'home'")
  for (const sort of ['-createdAt', 'createdAt', '-score', 'score']) {
    const ids: string[] = []
    let values: number[] = []
    let cursor: string | null = null
    do {
      const url: string = `/api/v1/leads?product=home&sort=${encodeURIComponent(sort)}&limit=7${cursor ? `&cursor=${cursor}` : ''}`
      const res = await api.inject(url)
      assert.equal(res.statusCode, 200, url)
      const body: { data: Array<{ id: string, score: number, createdAt: string }>, nextCursor: string | null } = res.json()
      ids.push(...body.data.map((l) => l.id))
      values = values.concat(body.data.map((l) => sort.endsWith('score') ? l.score : Date.parse(l.createdAt)))
      cursor = body.nextCursor
    } while (cursor)
    assert.equal(ids.length, total?.n, sort)
    assert.equal(new Set(ids).size, ids.length, `${sort}: no repeats`)
    const sorted = [...values].sort((a, b) => sort.startsWith('-') ? b - a : a - b)
    assert.deepEqual(values, sorted, `${sort}: ordered`)
  }
})

test('bad list parameters get 400 naming the parameter', async () => {
  const cases: Array<[string, RegExp]> = [
    ['limit=0', /querystring\/limit must be >= 1/],
    ['limit=101', /querystring\/limit must be <= 100/],
    ['status=won', /querystring\/status must be one of/],
    ['product=boat', /querystring\/product must be one of/],
    ['state=ZZ', /querystring\/state must be one of/],
    ['minScore=abc', /querystring\/minScore must be integer/],
    ['sort=name', /querystring\/sort must be one of/],
    // A parameter no route declares is not named (it may be a lead's name); one some route declares is.
    ['color=red', /^querystring has a property that is not allowed$/],
    ['phone=1', /^querystring\/phone is not allowed$/],
    ['cursor=***', /querystring\/cursor must match pattern/]
  ]
  for (const [query, message] of cases) {
    const res = await api.inject(`/api/v1/leads?${query}`)
    assert.equal(res.statusCode, 400, query)
    assert.equal(res.json().code, 'VALIDATION_ERROR')
    assert.match(res.json().message, message, query)
  }
})

test('a forged or foreign cursor gets 400 INVALID_CURSOR', async () => {
  const forged = Buffer.from('["-createdAt","not a date","x"]').toString('base64url')
  const garbage = Buffer.from('hello').toString('base64url')
  const page = (await api.inject('/api/v1/leads?limit=1&sort=-score')).json()
  for (const url of [`/api/v1/leads?cursor=${garbage}`, `/api/v1/leads?cursor=${page.nextCursor}`, `/api/v1/leads?cursor=${forged}`]) {
    const res = await api.inject(url)
    assert.equal(res.statusCode, 400, url)
    assert.equal(res.json().code, 'INVALID_CURSOR')
  }
})

test('POST creates a lead (201, Location) and records a created activity', async () => {
  const res = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead({ source: 'partner:acme', score: 70 }) })
  assert.equal(res.statusCode, 201)
  const lead = res.json()
  assert.equal(res.headers.location, `/api/v1/leads/${lead.id}`)
  assert.equal(lead.status, 'new')
  assert.equal(lead.score, 70)
  assert.equal(lead.source, 'partner:acme')
  const got = await api.inject(`/api/v1/leads/${lead.id}`)
  assert.deepEqual(got.json(), lead)
  const activities = (await api.inject(`/api/v1/leads/${lead.id}/activities`)).json()
  assert.deepEqual(activities.data.map((a: { type: string }) => a.type), ['created'])
})

test('POST rejects bad input with 400 naming the field', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ firstName: undefined }, /body\/firstName is required/],
    [{ email: 'not-an-email' }, /body\/email must match format "email"/],
    [{ product: 'boat' }, /body\/product must be one of/],
    [{ state: 'XX' }, /body\/state must be one of/],
    [{ phone: 'call me' }, /body\/phone must be a phone number: at least 7 digits/],
    [{ score: 101 }, /body\/score must be <= 100/],
    [{ firstName: '   ' }, /body\/firstName must not be blank/],
    [{ status: 'converted' }, /body\/status is not allowed/]
  ]
  for (const [over, message] of cases) {
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead(over) })
    assert.equal(res.statusCode, 400, JSON.stringify(over))
    assert.match(res.json().message, message)
  }
})

test('POST of the same email and product is a 409; another product is fine', async () => {
  const lead = newLead()
  assert.equal((await api.inject({ method: 'POST', url: '/api/v1/leads', payload: lead })).statusCode, 201)
  const dup = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { ...lead, email: lead.email.toUpperCase() } })
  assert.equal(dup.statusCode, 409)
  // Only that a lead exists: nothing of the stored one (an anonymous caller may send any email).
  assert.deepEqual(dup.json(), { statusCode: 409, code: 'LEAD_DUPLICATE', error: 'Conflict', message: 'A lead with this email and product already exists' })
  assert.equal((await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { ...lead, product: 'life' } })).statusCode, 201)
})

test('a body over the limit gets 413; a non-JSON body 415', async () => {
  const big = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead({ firstName: 'x'.repeat(20000) }) })
  assert.equal(big.statusCode, 413)
  assert.equal(big.json().code, 'BODY_TOO_LARGE')
  const text = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': 'text/plain' }, payload: 'hi' })
  assert.equal(text.statusCode, 415)
})

test('a JSON body declared in another charset (utf-16, latin1) is refused 415 UNSUPPORTED_MEDIA_TYPE, not read as UTF-8; utf-8 in any spelling is read', async () => {
  for (const charset of ['utf-16', 'UTF-16LE', '"utf-16"', 'latin1', 'iso-8859-1', '""']) {
    const lead = newLead({ lastName: 'Lée' })
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': `application/json; charset=${charset}` }, payload: Buffer.from(JSON.stringify(lead), 'latin1') })
    assert.equal(res.statusCode, 415, `charset=${charset}: ${res.body}`)
    assert.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE', charset)
    assert.doesNotMatch(res.json().message, new RegExp(charset.replace(/"/g, '') || '^$', 'i'), 'the charset sent is not echoed')
    const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE email = $1', [lead.email])
    assert.equal(row?.n, 0, charset)
  }
  for (const type of ['application/json; charset=utf-8', 'application/json;charset=UTF-8', 'application/json; charset="UTF-8"', 'Application/JSON; Charset=Utf-8', 'application/json; charset=utf8', 'application/json']) {
    const lead = newLead({ lastName: 'Lée' })
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': type }, payload: Buffer.from(JSON.stringify(lead), 'utf8') })
    assert.equal(res.statusCode, 201, `${type}: ${res.body}`)
    assert.equal(res.json().lastName, 'Lée', type)
  }
})

test('a JSON body whose bytes are not UTF-8 (a Latin-1 name sent with no charset, or declared UTF-8 or US-ASCII) is refused 400 INVALID_JSON, never stored with replacement characters', async () => {
  for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json; charset=us-ascii']) {
    const lead = newLead({ lastName: 'Lée' })
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': type }, payload: Buffer.from(JSON.stringify(lead), 'latin1') })
    assert.equal(res.statusCode, 400, `${type}: ${res.body}`)
    assert.deepEqual(res.json(), { statusCode: 400, code: 'INVALID_JSON', error: 'Bad Request', message: 'Body is not valid JSON: its bytes are not UTF-8' })
    const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE email = $1', [lead.email])
    assert.equal(row?.n, 0, type)
  }
})

test('a charset= inside a quoted parameter value is not read as the charset, and US-ASCII (a subset of UTF-8) is read', async () => {
  for (const type of ['application/json; foo="a;charset=latin1"', 'application/json; boundary="x;charset=utf-16"', 'application/json; foo="a\\";charset=utf-16"', 'application/json; charset=us-ascii', 'application/json; charset="US-ASCII"', 'application/json; charset=ASCII']) {
    const lead = newLead()
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': type }, payload: Buffer.from(JSON.stringify(lead), 'utf8') })
    assert.equal(res.statusCode, 201, `${type}: ${res.body}`)
  }
})

test('a malformed JSON Content-Type (an empty charset=, an unclosed quote, a parameter without =) is refused 415 UNSUPPORTED_MEDIA_TYPE, the header not echoed', async () => {
  for (const type of ['application/json; charset=', 'application/json; charset="utf-8', 'application/json; charset', 'application/json; charset=utf-8 x']) {
    const lead = newLead()
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': type }, payload: Buffer.from(JSON.stringify(lead), 'utf8') })
    assert.equal(res.statusCode, 415, `${type}: ${res.body}`)
    assert.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE', type)
    assert.doesNotMatch(res.json().message, /charset=/, 'the header is not echoed')
    const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads WHERE email = $1', [lead.email])
    assert.equal(row?.n, 0, type)
  }
})

test('GET /:id answers 404 for an unknown id and 400 for a malformed one', async () => {
  const missing = await api.inject('/api/v1/leads/00000000-0000-4000-8000-000000000000')
  assert.equal(missing.statusCode, 404)
  assert.equal(missing.json().code, 'LEAD_NOT_FOUND')
  const bad = await api.inject('/api/v1/leads/42')
  assert.equal(bad.statusCode, 400)
  assert.match(bad.json().message, /params\/id must match format "uuid"/)
})

test('PATCH changes only the given fields and records the status change', async () => {
  const lead = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  const res = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { status: 'contacted', score: 55 } })
  assert.equal(res.statusCode, 200)
  const updated = res.json()
  assert.equal(updated.status, 'contacted')
  assert.equal(updated.score, 55)
  assert.equal(updated.email, lead.email)
  assert.ok(Date.parse(updated.updatedAt) >= Date.parse(lead.updatedAt))
  const activities = (await api.inject(`/api/v1/leads/${lead.id}/activities`)).json().data
  assert.equal(activities[0].type, 'status_changed')
  assert.deepEqual(activities[0].details.status, { from: 'new', to: 'contacted' })
  assert.deepEqual(activities[0].details.fields.sort(), ['score', 'status'])
})

test('PATCHes that change nothing leave no activity, others name only what changed, and concurrent ones chain each status change from the one before', async () => {
  const lead = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  const patch = (payload: object) => api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload })
  const same = await patch({ status: 'new', score: lead.score })
  assert.equal(same.statusCode, 200)
  assert.equal(same.json().updatedAt, lead.updatedAt)
  const scoreOnly = await patch({ status: 'new', score: lead.score + 1, state: lead.state })
  assert.equal(scoreOnly.json().score, lead.score + 1)
  let activities = (await api.inject(`/api/v1/leads/${lead.id}/activities`)).json().data
  assert.deepEqual(activities.map((a: { type: string }) => a.type), ['updated', 'created'])
  assert.deepEqual(activities[0].details, { fields: ['score'] })
  // Each PATCH locks the row before it reads it: the "from" of every status change is the "to" of the one before.
  const statuses = ['contacted', 'qualified', 'contacted', 'qualified', 'contacted', 'qualified']
  await Promise.all(statuses.map((status) => patch({ status })))
  activities = (await api.inject(`/api/v1/leads/${lead.id}/activities?limit=50`)).json().data
  const changes = activities.filter((a: { type: string }) => a.type === 'status_changed').reverse()
    .map((a: { details: { status: { from: string, to: string } } }) => a.details.status)
  assert.ok(changes.length >= 2)
  assert.equal(changes[0].from, 'new')
  for (let i = 1; i < changes.length; i++) assert.equal(changes[i].from, changes[i - 1].to)
  for (const c of changes) assert.notEqual(c.from, c.to)
})

test('a PATCH is one statement to PostgreSQL, not a transaction of five round trips', async () => {
  const lead = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  assert.equal((await api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { score: 7 } })).statusCode, 200)
  const statements: string[] = []
  const seam = tracingChannel<unknown, { text: string }>(QUERY_CHANNEL_NAME)
  const handlers = { start: (m: { text: string }) => { statements.push(m.text) }, end: () => {}, asyncStart: () => {}, asyncEnd: () => {}, error: () => {} }
  seam.subscribe(handlers)
  try {
    const res = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { status: 'contacted', score: 8 } })
    assert.equal(res.statusCode, 200)
  } finally {
    seam.unsubscribe(handlers)
  }
  assert.equal(statements.length, 1, statements.join('\n---\n'))
})

test('PATCH failure paths: empty body, unknown field, bad value, unknown id, duplicate', async () => {
  const a = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  const b = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  const patch = (id: string, payload: object) => api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, payload })
  assert.equal((await patch(a.id, {})).statusCode, 400)
  assert.match((await patch(a.id, { id: 'x' })).json().message, /body\/id is not allowed/)
  assert.match((await patch(a.id, { status: 'won' })).json().message, /body\/status must be one of/)
  assert.equal((await patch('00000000-0000-4000-8000-000000000000', { score: 1 })).statusCode, 404)
  const dup = await patch(b.id, { email: a.email })
  assert.equal(dup.statusCode, 409)
  assert.equal(dup.json().code, 'LEAD_DUPLICATE')
  // The failed PATCH left no activity behind.
  const activities = (await api.inject(`/api/v1/leads/${b.id}/activities`)).json().data
  assert.deepEqual(activities.map((x: { type: string }) => x.type), ['created'])
})

test('activities page newest first; an unknown lead is 404', async () => {
  const lead = (await api.inject({ method: 'POST', url: '/api/v1/leads', payload: newLead() })).json()
  for (const score of [1, 2, 3]) await api.inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { score } })
  const first = (await api.inject(`/api/v1/leads/${lead.id}/activities?limit=2`)).json()
  assert.equal(first.data.length, 2)
  const second = (await api.inject(`/api/v1/leads/${lead.id}/activities?limit=2&cursor=${first.nextCursor}`)).json()
  assert.equal(second.data.length, 2)
  assert.equal(second.nextCursor, null)
  const ids = [...first.data, ...second.data].map((x: { id: string }) => Number(x.id))
  assert.deepEqual(ids, [...ids].sort((x, y) => y - x))
  const missing = await api.inject('/api/v1/leads/00000000-0000-4000-8000-000000000000/activities')
  assert.equal(missing.statusCode, 404)
})
