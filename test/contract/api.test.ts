import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { publicDir } from '../../services/platform/paths.js'
import { SERVICE_HEADERS, createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'
import { ContractChecker } from './checker.js'
import type { OpenApiDocument } from '../../scripts/lib/openapi.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let app: FastifyInstance
let tight: FastifyInstance
let contract: ContractChecker
const keys: Record<string, string> = {}

before(async () => {
  db = await createTestSchema()
  // Loopback is the trusted proxy here, as NGINX is in the cluster: the edge auth route answers it.
  app = await buildApp(testApiConfig(db, { REDIS_URL, CACHE_PREFIX: `${uniqueName('oa')}:`, TRUST_PROXY: '127.0.0.1/32' }))
  // The same service with a limit of one request a minute: every later request is answered 429.
  tight = await buildApp(testApiConfig(db, { REDIS_URL, CACHE_PREFIX: `${uniqueName('oa')}:`, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', API_KEY_LOOKUP_LIMIT: '1', RATE_LIMIT_PREFIX: `${uniqueName('oarl')}:` }))
  // The document of the service as deployed, with its rate limiter: without one, the limiter's codes and fields are
  // not listed, and the answers of `tight` carry them.
  const served = await tight.inject('/api/v1/openapi.json')
  assert.equal(served.statusCode, 200)
  contract = new ContractChecker(served.json<OpenApiDocument>())
  for (const [name, scopes] of Object.entries({ reader: ['leads:read'], writer: ['leads:write', 'leads:read'], creator: ['leads:create'], admin: ['admin'], none: ['reports:read'] })) {
    keys[name] = (await app.apiKeys.mint(`contract ${name}`, scopes)).key
  }
})

after(async () => {
  await app?.close()
  await tight?.close()
  await db?.drop()
})

const as = (key: string | undefined): Record<string, string> => (key ? { 'x-api-key': key } : {})
const missing = '00000000-0000-4000-8000-000000000000'

test('every answer of every api route, success and error, matches the api\'s OpenAPI document', async () => {
  const call = async (method: string, url: string, key?: string, extra: Record<string, unknown> = {}) => contract.inject(app, { method: method as 'GET', url, headers: as(key), ...extra })
  await call('GET', '/health/live')
  await call('GET', '/health/ready')
  await call('GET', '/metrics')
  await call('GET', '/health/live', 'not-a-key')

  const lead = { firstName: 'Ann', lastName: 'Lee', email: 'ann.contract@example.com', product: 'auto', state: 'CA' }
  const created = await call('POST', '/api/v1/leads', undefined, { payload: lead })
  assert.equal(created.statusCode, 201)
  const id = created.json<{ id: string }>().id
  assert.equal((await call('POST', '/api/v1/leads', keys.creator, { payload: { ...lead, email: 'bee.contract@example.com' } })).statusCode, 201)
  assert.equal((await call('POST', '/api/v1/leads', undefined, { payload: { ...lead, email: 'nope' } })).statusCode, 400)
  assert.equal((await call('POST', '/api/v1/leads', 'not-a-key', { payload: lead })).statusCode, 401)
  assert.equal((await call('POST', '/api/v1/leads', keys.reader, { payload: lead })).statusCode, 403)
  assert.equal((await call('POST', '/api/v1/leads', undefined, { payload: { ...lead, source: 'x'.repeat(2 * 1024 * 1024) } })).statusCode, 413)
  assert.equal((await call('POST', '/api/v1/leads', undefined, { payload: 'text', headers: { 'content-type': 'text/plain' } })).statusCode, 415)
  assert.equal((await call('POST', '/api/v1/leads', undefined, { payload: '{"firstName":', headers: { 'content-type': 'application/json' } })).statusCode, 400)

  for (const url of ['/api/v1/leads?limit=5', `/api/v1/leads/${id}`, `/api/v1/leads/${id}/activities`]) {
    assert.equal((await call('GET', url, keys.reader)).statusCode, 200, url)
    assert.equal((await call('GET', url)).statusCode, 401, url)
    assert.equal((await call('GET', url, keys.none)).statusCode, 403, url)
  }
  assert.equal((await call('GET', '/api/v1/leads?limit=1000', keys.reader)).statusCode, 400)
  assert.equal((await call('GET', '/api/v1/leads/not-a-uuid', keys.reader)).statusCode, 400)
  assert.equal((await call('GET', '/api/v1/leads/not-a-uuid/activities', keys.reader)).statusCode, 400)
  assert.equal((await call('GET', `/api/v1/leads/${missing}`, keys.reader)).statusCode, 404)
  assert.equal((await call('GET', `/api/v1/leads/${missing}/activities`, keys.reader)).statusCode, 404)

  assert.equal((await call('PATCH', `/api/v1/leads/${id}`, keys.writer, { payload: { status: 'contacted' } })).statusCode, 200)
  assert.equal((await call('PATCH', `/api/v1/leads/${id}`, keys.writer, { payload: {} })).statusCode, 400)
  assert.equal((await call('PATCH', `/api/v1/leads/${missing}`, keys.writer, { payload: { status: 'lost' } })).statusCode, 404)
  assert.equal((await call('PATCH', `/api/v1/leads/${id}`, undefined, { payload: { status: 'lost' } })).statusCode, 401)
  assert.equal((await call('PATCH', `/api/v1/leads/${id}`, keys.reader, { payload: { status: 'lost' } })).statusCode, 403)

  for (const view of ['cache', 'rate-limit', 'pool', 'queries']) {
    assert.equal((await call('GET', `/api/v1/admin/${view}`, keys.admin)).statusCode, 200, view)
    assert.equal((await call('GET', `/api/v1/admin/${view}`)).statusCode, 401, view)
    assert.equal((await call('GET', `/api/v1/admin/${view}`, keys.reader)).statusCode, 403, view)
  }

  assert.equal((await call('GET', '/api/v1/edge/auth', keys.reader)).statusCode, 204)
  assert.equal((await call('GET', '/api/v1/edge/auth', 'not-a-key')).statusCode, 401)
  assert.equal((await contract.inject(tight, { method: 'GET', url: '/api/v1/edge/auth', headers: as(keys.reader) })).statusCode, 404, 'a peer that is not a trusted proxy')
  assert.equal((await call('GET', '/quote')).statusCode, 301)
  const built = existsSync(join(publicDir, 'quote', 'index.html'))
  assert.ok(built, 'the lead-capture page is built by npm run build')
  assert.equal((await call('GET', '/quote/')).statusCode, 200)
  const asset = readdirSync(join(publicDir, 'static'))[0]
  assert.ok(asset)
  assert.equal((await call('GET', `/static/${asset}`)).statusCode, 200)
  assert.equal((await call('GET', '/static/..%2Fsecret')).statusCode, 400)
  assert.equal((await call('GET', '/static/missing.0123456789ab.js')).statusCode, 404)
  // The platform's own calls carry no key but the service key.
  assert.equal((await contract.inject(app, { url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })).statusCode, 200)

  // Every rate-limited route answers 429 with Retry-After once its limit is spent.
  await tight.inject('/api/v1/leads')
  for (const [method, url] of [['GET', '/api/v1/leads'], ['POST', '/api/v1/leads'], ['GET', `/api/v1/leads/${id}`], ['PATCH', `/api/v1/leads/${id}`], ['GET', `/api/v1/leads/${id}/activities`],
    ['GET', '/api/v1/admin/cache'], ['GET', '/api/v1/admin/rate-limit'], ['GET', '/api/v1/admin/pool'], ['GET', '/api/v1/admin/queries']] as const) {
    const res = await contract.inject(tight, { method, url, ...(method === 'GET' ? {} : { payload: { status: 'lost' } }) })
    assert.equal(res.statusCode, 429, `${method} ${url}`)
  }
  // The routes the limiter skips still refuse key lookups over the address's budget.
  await contract.refuseLookups(tight, [['GET', '/health/live'], ['GET', '/health/ready'], ['GET', '/metrics'], ['GET', '/quote'], ['GET', '/quote/'], ['GET', `/static/${asset}`]])
})

test('a route the contract test does not drive fails it: every api operation answered its success and its client errors', { }, async () => {
  // Runs after the test above (node:test runs a file's tests in order).
  assert.deepEqual(contract.uncovered(), [])
})
