import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig } from '../../test/helpers/database.js'
import { insertLeads } from '../../test/helpers/services.js'

test('a NUL byte or another control character in a name is a 400 that says the rule, on POST and PATCH', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const api = authed(app)
  const [id] = await insertLeads(db, 1)
  const rule = 'must not be blank nor contain control characters (NUL, line breaks, tabs)'
  for (const name of ['Ann\u0000X', 'Ann\nX', 'Ann\tX', 'x\u007f', '  ']) {
    const created = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: name, lastName: 'Lee', email: 'text@example.com', product: 'auto', state: 'CA' } })
    assert.equal(created.statusCode, 400, created.body)
    assert.deepEqual([created.json().code, created.json().message], ['VALIDATION_ERROR', `body/firstName ${rule}`])
    const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, payload: { lastName: name, score: 101 } })
    assert.equal(patched.statusCode, 400, patched.body)
    assert.match(patched.json().message, new RegExp(`^body/lastName ${rule.replace(/[()]/g, '\\$&')}`))
    assert.ok(!patched.json().message.includes(name.trim() || 'none'), 'the value is not quoted')
  }
  const fine = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Zoë', lastName: 'O\'Neil-Smith', email: 'text@example.com', product: 'auto', state: 'CA' } })
  assert.equal(fine.statusCode, 201, fine.body)
  const [n] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE email = 'text@example.com'")
  assert.equal(n?.n, 1)
})
