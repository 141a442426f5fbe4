import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from './app.js'
import { loadApiConfig } from './config.js'
import { authed, createTestSchema, testApiConfig, testEnv } from '../../test/helpers/database.js'

test('LEAD_BODY_LIMIT_BYTES above BODY_LIMIT_BYTES is refused at start instead of letting a lead body past the service limit be read and answered 400', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  assert.throws(() => loadApiConfig({ dotenv: false, env: testEnv(db, { BODY_LIMIT_BYTES: '1024', LEAD_BODY_LIMIT_BYTES: '200000' }) }),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
      assert.match(e.message, /LEAD_BODY_LIMIT_BYTES must not exceed BODY_LIMIT_BYTES \(200000 > 1024\)/)
      return true
    })
  // Equal limits start; a lead over them is 413 before it is parsed.
  const app = await buildApp(testApiConfig(db, { BODY_LIMIT_BYTES: '4096', LEAD_BODY_LIMIT_BYTES: '4096' }))
  t.after(() => app.close())
  const big = JSON.stringify({ firstName: 'A'.repeat(100_000), lastName: 'Lee', email: 'big@example.com', product: 'auto', state: 'CA' })
  for (const method of ['POST', 'PATCH'] as const) {
    const url = method === 'POST' ? '/api/v1/leads' : '/api/v1/leads/00000000-0000-4000-8000-000000000000'
    const res = await authed(app).inject({ method, url, headers: { 'content-type': 'application/json' }, payload: big })
    assert.equal(res.statusCode, 413, res.body)
    assert.equal(res.json().code, 'BODY_TOO_LARGE')
  }
})
