import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig } from '../../test/helpers/database.js'

// A boolean name was stored as the text "true", a null score as 0: the NDJSON import already refused the same record.
test('a lead with true/false names, an array product or state and a null score is refused 400 on POST, and a PATCH with an array status or a false score', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const api = authed(app)
  const record = { firstName: true, lastName: false, email: 'c3@example.com', product: ['home'], state: ['TX'], score: null }
  const created = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: record })
  assert.equal(created.statusCode, 400, created.body)
  assert.equal(created.json().code, 'VALIDATION_ERROR')
  assert.match(created.json().message, /^body\/firstName must be string/)
  for (const [field, value] of [['firstName', 1], ['product', ['home']], ['state', ['TX']], ['score', null], ['score', '50'], ['phone', 5551234567]] as const) {
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Ann', lastName: 'Lee', email: 'c3@example.com', product: 'home', state: 'TX', [field]: value } })
    assert.equal(res.statusCode, 400, `${field}: ${res.body}`)
    assert.match(res.json().message, new RegExp(`^body/${field} `))
  }
  const [n] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE email = 'c3@example.com'")
  assert.equal(n?.n, 0)

  const lead = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Ann', lastName: 'Lee', email: 'c3@example.com', product: 'home', state: 'TX', score: 40 } })
  assert.equal(lead.statusCode, 201, lead.body)
  const id = lead.json().id as string
  for (const patch of [{ status: ['lost'], score: false }, { status: ['lost'] }, { score: false }, { score: '7' }, { lastName: true }]) {
    const res = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, payload: patch })
    assert.equal(res.statusCode, 400, `${JSON.stringify(patch)}: ${res.body}`)
    assert.equal(res.json().code, 'VALIDATION_ERROR')
  }
  const [row] = await db.sql<{ status: string, score: number }>('SELECT status, score FROM leads WHERE id = $1', [id])
  assert.deepEqual(row, { status: 'new', score: 40 })
})
