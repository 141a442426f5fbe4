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

test('BODY_LIMIT_BYTES=8192 with LEAD_BODY_LIMIT_BYTES unset starts the api, the lead limit lowered from its default to 8192, instead of refusing a default', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  for (const lead of [{}, { LEAD_BODY_LIMIT_BYTES: '' }] as Array<Record<string, string>>) {
    const config = loadApiConfig({ dotenv: false, env: testEnv(db, { BODY_LIMIT_BYTES: '8192', ...lead }) })
    assert.equal(config.LEAD_BODY_LIMIT_BYTES, 8192, JSON.stringify(lead))
  }
  assert.equal(loadApiConfig({ dotenv: false, env: testEnv(db, { BODY_LIMIT_BYTES: '32768' }) }).LEAD_BODY_LIMIT_BYTES, 16384, 'a default within the limit stays')
  // Set above BODY_LIMIT_BYTES, even to the default's value, it is refused.
  assert.throws(() => loadApiConfig({ dotenv: false, env: testEnv(db, { BODY_LIMIT_BYTES: '8192', LEAD_BODY_LIMIT_BYTES: '16384' }) }),
    /LEAD_BODY_LIMIT_BYTES must not exceed BODY_LIMIT_BYTES \(16384 > 8192\)/)
  const app = await buildApp(testApiConfig(db, { BODY_LIMIT_BYTES: '8192' }))
  t.after(() => app.close())
  const lead = JSON.stringify({ firstName: 'A'.repeat(9000), lastName: 'Lee', email: 'big@example.com', product: 'auto', state: 'CA' })
  const res = await authed(app).inject({ method: 'POST', url: '/api/v1/leads', headers: { 'content-type': 'application/json' }, payload: lead })
  assert.equal(res.statusCode, 413, res.body)
})
