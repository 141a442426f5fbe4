import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { logRedaction } from '@lead-chassis/plugins/chassis'
import { SERVICE_HEADERS, createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let app: FastifyInstance
let leadId: string
const keys: Record<string, string> = {}
const logLines: string[] = []

before(async () => {
  db = await createTestSchema()
  const logger = pino({ level: 'info', ...logRedaction }, new Writable({ write (chunk: Buffer, _e, done) { logLines.push(chunk.toString()); done() } }))
  app = await buildApp(testApiConfig(db, { REDIS_URL, CACHE_PREFIX: `${uniqueName('acl')}:` }), { logger })
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('Ann', 'Lee', 'ann@example.com', 'auto', 'CA') RETURNING id")
  leadId = lead?.id as string
  for (const [name, scopes] of Object.entries({ read: ['leads:read'], write: ['leads:write'], create: ['leads:create'], admin: ['admin'], none: [] as string[] })) {
    keys[name] = (await app.apiKeys.mint(name, scopes)).key
  }
  const revoked = await app.apiKeys.mint('revoked', ['leads:read', 'leads:write', 'leads:create', 'admin'])
  await app.apiKeys.revoke(revoked.id)
  keys.revoked = revoked.key
})

after(async () => {
  await app?.close()
  await db?.drop()
})

const newLead = () => ({ firstName: 'Bo', lastName: 'Ek', email: `bo.${Math.random().toString(36).slice(2)}@example.com`, phone: '+1 555 010 9999', product: 'home', state: 'TX' })

test('every route answers each kind of caller with the documented status', async () => {
  const routes = [
    { name: 'list', method: 'GET', url: () => '/api/v1/leads', scope: 'read', anonymous: false },
    { name: 'get', method: 'GET', url: () => `/api/v1/leads/${leadId}`, scope: 'read', anonymous: false },
    { name: 'activities', method: 'GET', url: () => `/api/v1/leads/${leadId}/activities`, scope: 'read', anonymous: false },
    { name: 'patch', method: 'PATCH', url: () => `/api/v1/leads/${leadId}`, scope: 'write', anonymous: false, payload: () => ({ score: 42 }) },
    { name: 'create', method: 'POST', url: () => '/api/v1/leads', scope: 'create', anonymous: true, payload: newLead },
    { name: 'admin cache', method: 'GET', url: () => '/api/v1/admin/cache', scope: 'admin', anonymous: false },
    { name: 'admin rate-limit', method: 'GET', url: () => '/api/v1/admin/rate-limit', scope: 'admin', anonymous: false },
    { name: 'admin pool', method: 'GET', url: () => '/api/v1/admin/pool', scope: 'admin', anonymous: false },
    { name: 'admin queries', method: 'GET', url: () => '/api/v1/admin/queries', scope: 'admin', anonymous: false }
  ] as const
  for (const r of routes) {
    const call = (headers: Record<string, string>) => app.inject({ method: r.method, url: r.url(), headers, ...('payload' in r ? { payload: r.payload() } : {}) })
    const ok = r.method === 'POST' ? 201 : 200
    const anonymous = await call({})
    assert.equal(anonymous.statusCode, r.anonymous ? ok : 401, `${r.name}: no key`)
    const revoked = await call({ 'x-api-key': keys.revoked as string })
    assert.equal(revoked.statusCode, 401, `${r.name}: revoked key`)
    const wrong = await call({ 'x-api-key': keys.none as string })
    assert.equal(wrong.statusCode, 403, `${r.name}: key without the scope`)
    const scope = { read: 'leads:read', write: 'leads:write', create: 'leads:create', admin: 'admin' }[r.scope]
    assert.equal(wrong.json().code, 'MISSING_SCOPE')
    assert.match(wrong.json().message, new RegExp(`"${scope}"`), `${r.name}: the error names the missing scope`)
    const right = await call({ 'x-api-key': keys[r.scope] as string })
    assert.equal(right.statusCode, ok, `${r.name}: key with the scope`)
    const service = await call(SERVICE_HEADERS)
    assert.equal(service.statusCode, ok, `${r.name}: another service`)
  }
})

test('a PATCH writes one activity carrying the key id, in the same transaction; a failed PATCH writes none', async () => {
  const before = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM lead_activities WHERE lead_id = $1', [leadId])
  const keyId = (keys.write as string).split('_')[1]
  const ok = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${leadId}`, headers: { 'x-api-key': keys.write as string }, payload: { status: 'contacted' } })
  assert.equal(ok.statusCode, 200)
  const rows = await db.sql<{ actor: string, type: string }>('SELECT actor, type FROM lead_activities WHERE lead_id = $1 ORDER BY id DESC', [leadId])
  assert.equal(rows.length, (before[0]?.n ?? 0) + 1)
  assert.deepEqual(rows[0], { actor: `key:${keyId}`, type: 'status_changed' })
  const other = await app.inject({ method: 'POST', url: '/api/v1/leads', payload: { ...newLead(), email: 'dup@example.com', product: 'life' } })
  assert.equal(other.statusCode, 201)
  const [created] = await db.sql<{ actor: string }>('SELECT actor FROM lead_activities WHERE lead_id = $1', [other.json().id])
  assert.equal(created?.actor, 'anonymous')
  const failed = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${leadId}`, headers: { 'x-api-key': keys.write as string }, payload: { email: 'dup@example.com', product: 'life' } })
  assert.equal(failed.statusCode, 409)
  const after = await db.sql('SELECT 1 FROM lead_activities WHERE lead_id = $1', [leadId])
  assert.equal(after.length, rows.length, 'the failed PATCH left no activity')
})

test('personal data and keys never reach the logs', async () => {
  logLines.length = 0
  const lead = { firstName: 'Zelda', lastName: 'Quimby', email: 'zelda.quimby@example.org', phone: '+1 555 777 1234', product: 'life', state: 'NY' }
  const created = await app.inject({ method: 'POST', url: '/api/v1/leads', payload: lead, headers: { 'x-api-key': keys.create as string } })
  assert.equal(created.statusCode, 201)
  const dup = await app.inject({ method: 'POST', url: '/api/v1/leads', payload: lead })
  assert.equal(dup.statusCode, 409)
  app.log.info({ lead }, 'a careless log line with a lead in it')
  await new Promise((resolve) => setImmediate(resolve))
  const text = logLines.join('')
  assert.ok(logLines.length >= 4, 'requests were logged')
  for (const secret of [lead.email, lead.phone, lead.firstName, lead.lastName, keys.create as string, 'Zelda']) assert.ok(!text.includes(secret), `${secret} is in the logs`)
})

test('a wrong service key is refused 401 INVALID_SERVICE_KEY, not API_KEY_REQUIRED, on every route that authenticates and beside any API key; the answer is the same for every wrong key and without a service key configured, and the key reaches no log line', async (t) => {
  const noServiceKey = await buildApp(testApiConfig(db, { REDIS_URL, CACHE_PREFIX: `${uniqueName('acl')}:`, SERVICE_API_KEY: '' }))
  t.after(() => noServiceKey.close())
  logLines.length = 0
  const wrongKeys = ['wrong-service-key-5551234567', SERVICE_HEADERS['x-service-key'].slice(0, -1), `${SERVICE_HEADERS['x-service-key']}x`, 'x'.repeat(4000), '']
  const answers = new Set<string>()
  for (const [url, method, apiKey] of [['/api/v1/leads', 'GET', undefined], ['/api/v1/leads', 'GET', keys.read], [`/api/v1/leads/${leadId}`, 'PATCH', keys.write], ['/api/v1/leads', 'POST', undefined], ['/api/v1/admin/cache', 'GET', keys.admin]] as const) {
    for (const wrong of wrongKeys) {
      for (const target of [app, noServiceKey]) {
        const headers = { 'x-service-key': wrong, ...(apiKey !== undefined ? { 'x-api-key': apiKey } : {}) }
        const res = await target.inject({ method, url, headers, ...(method === 'GET' ? {} : { payload: method === 'POST' ? newLead() : { score: 1 } }) })
        const label = `${method} ${url} ${wrong.slice(0, 30)}${apiKey !== undefined ? ' beside an API key' : ''}`
        assert.equal(res.statusCode, 401, `${label}: ${res.body}`)
        assert.equal(res.json().code, 'INVALID_SERVICE_KEY', label)
        answers.add(res.body)
      }
    }
  }
  assert.deepEqual([...answers].map((body) => JSON.parse(body)), [{ statusCode: 401, code: 'INVALID_SERVICE_KEY', error: 'Unauthorized', message: 'The service key in x-service-key is not valid' }])
  // The right service key still passes.
  assert.equal((await app.inject({ url: '/api/v1/leads', headers: SERVICE_HEADERS })).statusCode, 200)
  await new Promise((resolve) => setImmediate(resolve))
  assert.ok(logLines.length > 10, 'requests were logged')
  const text = logLines.join('')
  for (const wrong of wrongKeys.slice(0, 4)) assert.ok(!text.includes(wrong), `${wrong.slice(0, 30)} is in the logs`)
})

test('security headers are sent on direct access, errors included', async () => {
  for (const res of [await app.inject({ url: '/api/v1/leads', headers: { 'x-api-key': keys.read as string } }), await app.inject('/missing')]) {
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN')
    assert.match(String(res.headers['content-security-policy']), /default-src 'none'/)
    assert.match(String(res.headers['strict-transport-security']), /max-age=/)
  }
})

test('the admin query statistics hold normalized queries only', async () => {
  const res = await app.inject({ url: '/api/v1/admin/queries', headers: { 'x-api-key': keys.admin as string } })
  assert.equal(res.statusCode, 200)
  const body = res.json()
  assert.ok(body.summary.totalQueries > 0)
  assert.ok(body.top.some((s: { query: string }) => /FROM leads/.test(s.query)))
  assert.doesNotMatch(res.body, /ann@example\.com|dup@example\.com/)
})

test('a cached response is never served to a caller without the scope', async () => {
  const url = `/api/v1/leads/${leadId}`
  const first = await app.inject({ url, headers: { 'x-api-key': keys.read as string } })
  assert.equal(first.statusCode, 200)
  const hit = await app.inject({ url, headers: { 'x-api-key': keys.read as string } })
  assert.equal(hit.headers['x-cache'], 'HIT-LOCAL')
  for (const headers of [{}, { 'x-api-key': keys.none as string }, { 'x-api-key': keys.write as string }, { 'x-api-key': keys.revoked as string }]) {
    const res = await app.inject({ url, headers })
    assert.ok(res.statusCode === 401 || res.statusCode === 403, `got ${res.statusCode}`)
    assert.doesNotMatch(res.body, /ann@example\.com/)
    assert.equal(res.headers['x-cache'], undefined)
  }
})
