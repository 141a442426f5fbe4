import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildDataService } from '../../services/data-service/app.js'
import { loadDataServiceConfig } from '../../services/data-service/config.js'
import { createTestSchema, testEnv, uniqueName, type TestSchema } from '../helpers/database.js'
import { insertLeads } from '../helpers/services.js'
import { ContractChecker } from './checker.js'
import type { OpenApiDocument } from '../../scripts/lib/openapi.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let app: FastifyInstance
let tight: FastifyInstance
let contract: ContractChecker
const keys: Record<string, string> = {}

const build = async (env: Record<string, string>): Promise<FastifyInstance> =>
  buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, { REDIS_URL, CACHE_PREFIX: `${uniqueName('oa')}:`, IMPORT_MAX_BYTES: '4096', ...env }) }))

before(async () => {
  db = await createTestSchema()
  app = await build({})
  tight = await build({ RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', API_KEY_LOOKUP_LIMIT: '1', RATE_LIMIT_PREFIX: `${uniqueName('oarl')}:` })
  // The document of the service as deployed, with its rate limiter: without one, the limiter's codes and fields are
  // not listed, and the answers of `tight` carry them.
  const served = await tight.inject('/data/v1/openapi.json')
  assert.equal(served.statusCode, 200)
  contract = new ContractChecker(served.json<OpenApiDocument>())
  for (const [name, scopes] of Object.entries({ importer: ['leads:import'], reports: ['reports:read'], reader: ['leads:read'], none: ['admin'] })) {
    keys[name] = (await app.apiKeys.mint(`contract ${name}`, scopes)).key
  }
})

after(async () => {
  await app?.close()
  await tight?.close()
  await db?.drop()
})

const as = (key: string | undefined): Record<string, string> => (key ? { 'x-api-key': key } : {})
const CSV = 'firstName,lastName,email,phone,product,state,source,score\nAnn,Lee,ann.contract@example.com,,auto,CA,partner,40\nBo,Ng,not-an-email,,auto,CA,web,10\n'

test('every answer of every data-service route, success and error, matches the data-service\'s OpenAPI document', async () => {
  const call = async (method: string, url: string, key?: string, extra: { payload?: string, headers?: Record<string, string> } = {}) =>
    contract.inject(app, { method: method as 'GET', url, ...extra, headers: { ...as(key), ...extra.headers } })
  for (const url of ['/health/live', '/health/ready', '/metrics']) assert.equal((await call('GET', url)).statusCode, 200, url)

  const csv = { 'content-type': 'text/csv' }
  const imported = await call('POST', '/data/v1/imports/leads', keys.importer, { payload: CSV, headers: csv })
  assert.equal(imported.statusCode, 200)
  assert.equal(imported.json<{ rejected: number }>().rejected, 1)
  assert.equal((await call('POST', '/data/v1/imports/leads', undefined, { payload: CSV, headers: csv })).statusCode, 401)
  assert.equal((await call('POST', '/data/v1/imports/leads', keys.reader, { payload: CSV, headers: csv })).statusCode, 403)
  assert.equal((await call('POST', '/data/v1/imports/leads', keys.importer, { payload: CSV.repeat(100), headers: csv })).statusCode, 413)
  assert.equal((await call('POST', '/data/v1/imports/leads', keys.importer, { payload: '{}', headers: { 'content-type': 'application/json' } })).statusCode, 415)
  assert.equal((await call('POST', '/data/v1/imports/leads', keys.importer, { payload: 'x', headers: { 'content-type': 'text/plain' } })).statusCode, 415)

  for (const url of ['/data/v1/reports/leads', '/data/v1/reports/funnel?product=auto', '/data/v1/reports/agents']) {
    assert.equal((await call('GET', url, keys.reports)).statusCode, 200, url)
    assert.equal((await call('GET', url)).statusCode, 401, url)
    assert.equal((await call('GET', url, keys.reader)).statusCode, 403, url)
    assert.equal((await call('GET', `${url.split('?')[0] ?? url}?from=2026-02-01&to=2026-01-01`, keys.reports)).statusCode, 400, url)
    assert.equal((await call('GET', `${url.split('?')[0] ?? url}?from=yesterday`, keys.reports)).statusCode, 400, url)
  }

  const [id] = await insertLeads(db, 1)
  assert.ok(id)
  for (const url of ['/data/v1/leads/unassigned?limit=5', `/data/v1/leads/${id}`]) {
    assert.equal((await call('GET', url, keys.reader)).statusCode, 200, url)
    assert.equal((await call('GET', url)).statusCode, 401, url)
    assert.equal((await call('GET', url, keys.none)).statusCode, 403, url)
  }
  assert.equal((await call('GET', '/data/v1/leads/unassigned?limit=0', keys.reader)).statusCode, 400)
  assert.equal((await call('GET', '/data/v1/leads/not-a-uuid', keys.reader)).statusCode, 400)
  assert.equal((await call('GET', '/data/v1/leads/00000000-0000-4000-8000-000000000000', keys.reader)).statusCode, 404)

  await tight.inject('/data/v1/reports/leads')
  for (const [method, url] of [['POST', '/data/v1/imports/leads'], ['GET', '/data/v1/reports/leads'], ['GET', '/data/v1/reports/funnel'], ['GET', '/data/v1/reports/agents'],
    ['GET', '/data/v1/leads/unassigned'], ['GET', `/data/v1/leads/${id}`]] as const) {
    const res = await contract.inject(tight, { method, url, ...(method === 'POST' ? { payload: CSV, headers: csv } : {}) })
    assert.equal(res.statusCode, 429, `${method} ${url}`)
  }
  // The routes the limiter skips still refuse key lookups over the address's budget.
  await contract.refuseLookups(tight, [['GET', '/health/live'], ['GET', '/health/ready'], ['GET', '/metrics']])
})

test('a route the contract test does not drive fails it: every data-service operation answered its success and its client errors', async () => {
  assert.deepEqual(contract.uncovered(), [])
})
