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

test('a lone UTF-16 surrogate in a name, email, phone or source is a 400 that says it is not valid Unicode, on POST and PATCH', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const api = authed(app)
  const [id] = await insertLeads(db, 1)
  const unicode = 'must be valid Unicode: it holds an unpaired UTF-16 surrogate (\\ud800 to \\udfff), which is no character'
  const lead = { firstName: 'Ann', lastName: 'Lee', email: 'lone@example.com', product: 'auto', state: 'CA' }
  const json = { 'content-type': 'application/json' }
  for (const [field, value] of [['firstName', 'Ann\ud800'], ['lastName', '\udfffLee'], ['email', 'ann\ud800@example.com'], ['phone', '+1 555 0100\ud83d'], ['source', 'web\udc00']] as const) {
    // JSON.stringify writes a lone surrogate as its escape (`\ud800`), as a client's serializer sends half of a pair.
    const body = JSON.stringify({ ...lead, [field]: value })
    assert.match(body, /\\ud[89a-f][0-9a-f]{2}/, 'the body holds the escape')
    const created = await api.inject({ method: 'POST', url: '/api/v1/leads', headers: json, payload: body })
    assert.equal(created.statusCode, 400, created.body)
    assert.deepEqual([created.json().code, created.json().message], ['VALIDATION_ERROR', `body/${field} ${unicode}`])
    const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: json, payload: JSON.stringify({ [field]: value }) })
    assert.equal(patched.statusCode, 400, patched.body)
    assert.deepEqual([patched.json().code, patched.json().message], ['VALIDATION_ERROR', `body/${field} ${unicode}`])
  }
  const [n] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE email = 'lone@example.com' OR first_name LIKE '%\uFFFD%' OR last_name LIKE '%\uFFFD%'")
  assert.equal(n?.n, 0, 'nothing was stored, not even with a replacement character')
})

test('a name of only zero-width, format or space-separator characters and a phone with fewer than 7 digits (-------) are refused 400 on POST and PATCH, not stored', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const api = authed(app)
  const [id] = await insertLeads(db, 1)
  const lead = (over: Record<string, unknown>) => ({ firstName: 'Ann', lastName: 'Lee', email: 'blank@example.com', product: 'auto', state: 'CA', ...over })
  for (const name of ['\u200b', '\u200b\u200c\u200d\u2060', '\ufeff', '\u00a0', '\u3000\u2003', '\u00ad', ' \u200e ', '\u0301']) {
    const created = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: lead({ lastName: name }) })
    assert.equal(created.statusCode, 400, `${JSON.stringify(name)}: ${created.body}`)
    assert.match(created.json().message, /^body\/lastName must not be blank/)
    const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, payload: { firstName: name } })
    assert.equal(patched.statusCode, 400, `${JSON.stringify(name)}: ${patched.body}`)
    assert.match(patched.json().message, /^body\/firstName must not be blank/)
  }
  for (const phone of ['-------', '(((  )))', '+1 (55) 5-0', '123456', '.-.-.-.-']) {
    const created = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: lead({ phone }) })
    assert.equal(created.statusCode, 400, `${phone}: ${created.body}`)
    assert.match(created.json().message, /^body\/phone must be a phone number: at least 7 digits/)
    const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, payload: { phone } })
    assert.equal(patched.statusCode, 400, `${phone}: ${patched.body}`)
  }
  const [n] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE email = 'blank@example.com'")
  assert.equal(n?.n, 0)
  for (const [i, over] of [{ lastName: 'Lee\u200b' }, { lastName: 'Zoë' }, { phone: '5551234' }, { phone: '+1 (555) 123-4567' }, { phone: '+44 20 7946 0958' }].entries()) {
    const res = await api.inject({ method: 'POST', url: '/api/v1/leads', payload: lead({ ...over, email: `fine${i}@example.com` }) })
    assert.equal(res.statusCode, 201, `${JSON.stringify(over)}: ${res.body}`)
  }
})
