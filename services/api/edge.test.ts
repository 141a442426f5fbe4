import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { SERVICE_HEADERS, createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'

// The auth subrequest of NGINX's shared micro-cache (deploy/nginx/nginx.conf); the real NGINX is in test/deploy.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let app: FastifyInstance

before(async () => {
  db = await createTestSchema()
  // NGINX is the trusted proxy (TRUST_PROXY); inject's peer is 127.0.0.1.
  app = await buildApp(testApiConfig(db, { REDIS_URL, TRUST_PROXY: '127.0.0.1/32', API_KEY_LOOKUP_LIMIT: '5', REDIS_COMMAND_TIMEOUT_MS: '2000', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '2', CACHE_PREFIX: `${uniqueName('edge')}:`, RATE_LIMIT_PREFIX: `${uniqueName('edge-rl')}:` }))
})

after(async () => {
  await app?.close()
  await db?.drop()
})

const ask = (headers: Record<string, string> = {}) => app.inject({ url: '/api/v1/edge/auth', headers })

test('a valid key holding leads:read is named shareable; a valid key without it, no key and the service key get 204 without it; a key that is not valid gets 401', async () => {
  const reader = (await app.apiKeys.mint('edge reader', ['leads:read', 'leads:write'])).key
  const writer = (await app.apiKeys.mint('edge writer', ['leads:write'])).key
  const revoked = await app.apiKeys.mint('edge revoked', ['leads:read'])
  await app.apiKeys.revoke(revoked.id)
  const yes = await ask({ 'x-api-key': reader })
  assert.equal(yes.statusCode, 204)
  assert.equal(yes.headers['x-edge-scope'], 'leads:read')
  const others: Array<Record<string, string>> = [{ 'x-api-key': writer }, {}, SERVICE_HEADERS]
  for (const headers of others) {
    const no = await ask(headers)
    assert.equal(no.statusCode, 204, JSON.stringify(headers))
    assert.equal(no.headers['x-edge-scope'], undefined, JSON.stringify(headers))
  }
  // NGINX answers these itself (401), without sending the request on to the routes.
  for (const key of [revoked.key, 'not-a-key']) {
    const refused = await ask({ 'x-api-key': key })
    assert.equal(refused.statusCode, 401, key)
    assert.equal(refused.json().code, 'INVALID_API_KEY')
  }
})

test('it is never rate limited: a 429 there would fail the caller\'s request at the edge', async () => {
  // The default policy allows 2 per window to a caller without a key; NGINX asks once per key and period.
  const answers = await Promise.all(Array.from({ length: 6 }, () => ask()))
  assert.deepEqual(answers.map((r) => r.statusCode), [204, 204, 204, 204, 204, 204])
})

test('on a service port the edge auth route is no verification oracle: a peer that is not a trusted proxy gets 404', async () => {
  const reader = (await app.apiKeys.mint('edge oracle', ['leads:read'])).key
  const direct = await app.inject({ url: '/api/v1/edge/auth', headers: { 'x-api-key': reader }, remoteAddress: '198.51.100.40' })
  assert.equal(direct.statusCode, 404)
  assert.equal(direct.json().code, 'NOT_FOUND')
  assert.equal(direct.headers['x-edge-scope'], undefined)
  assert.equal((await ask({ 'x-api-key': reader })).headers['x-edge-scope'], 'leads:read', 'the trusted proxy is answered')
})

test('the edge auth route charges each lookup to the client\'s lookup budget (API_KEY_LOOKUP_LIMIT 5)', async () => {
  // Well-formed (12 alphanumerics, 43 secret characters) and never minted.
  const invented = (i: number): string => `lck_EdgeOracle${String(i).padStart(2, '0')}_${'x'.repeat(43)}`
  const codes: number[] = []
  for (let i = 0; i < 8; i++) codes.push((await ask({ 'x-api-key': invented(i), 'x-forwarded-for': '203.0.113.41' })).statusCode)
  assert.deepEqual(codes, [401, 401, 401, 401, 401, 403, 403, 403], 'over the budget: 403, which NGINX answers as its 429')
  const other = await ask({ 'x-api-key': invented(9), 'x-forwarded-for': '203.0.113.42' })
  assert.equal(other.statusCode, 401, 'counted per client address, not per proxy')
})
