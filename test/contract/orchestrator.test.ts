import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { get } from 'node:http'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { createTestSchema, uniqueName, type TestSchema } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../helpers/services.js'
import { ContractChecker } from './checker.js'
import type { OpenApiDocument } from '../../scripts/lib/openapi.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const t = { after: (fn: () => Promise<void>) => { closers.push(fn) } }
const closers: Array<() => Promise<void>> = []
let db: TestSchema
let app: FastifyInstance
let url: string
let tight: FastifyInstance
let contract: ContractChecker
const keys: Record<string, string> = {}

before(async () => {
  db = await createTestSchema()
  const data = await startDataService(t, db)
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('oa')}:`, EVENTS_CHANNEL: uniqueName('oa-events') }
  ;({ app, url } = await startOrchestrator(t, db, data.url, env, true))
  ;({ app: tight } = await startOrchestrator(t, db, data.url, { ...env, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', API_KEY_LOOKUP_LIMIT: '1', RATE_LIMIT_PREFIX: `${uniqueName('oarl')}:` }))
  // The document of the service as deployed, with its rate limiter: without one, the limiter's codes and fields are
  // not listed, and the answers of `tight` carry them.
  const served = await tight.inject('/orchestrator/v1/openapi.json')
  assert.equal(served.statusCode, 200)
  contract = new ContractChecker(served.json<OpenApiDocument>())
  for (const [name, scopes] of Object.entries({ router: ['routing'], none: ['leads:read'] })) keys[name] = (await app.apiKeys.mint(`contract ${name}`, scopes)).key
})

after(async () => {
  for (const close of closers.reverse()) await close()
  await db?.drop()
})

const as = (key: string | undefined): Record<string, string> => (key ? { 'x-api-key': key } : {})
const missing = '00000000-0000-4000-8000-000000000000'

test('every answer of every orchestrator route, success and error, matches the orchestrator\'s OpenAPI document', async () => {
  const call = async (method: string, path: string, key?: string, payload?: unknown) =>
    contract.inject(app, { method: method as 'GET', url: path, headers: as(key), ...(payload !== undefined ? { payload: payload as object } : {}) })
  for (const path of ['/health/live', '/health/ready', '/metrics']) assert.equal((await call('GET', path)).statusCode, 200, path)

  await insertAgents(db, [{ name: 'Contract', capacity: 10 }])
  const [first, second] = await insertLeads(db, 2)
  const [unroutable] = await insertLeads(db, 1, 'WY', 'life')
  assert.ok(first && second && unroutable)

  for (const [method, path] of [['GET', `/orchestrator/v1/leads/${first}/score`], ['POST', `/orchestrator/v1/leads/${first}/route`]] as const) {
    assert.equal((await call(method, path, keys.router)).statusCode, 200, path)
    assert.equal((await call(method, path)).statusCode, 401, path)
    assert.equal((await call(method, path, keys.none)).statusCode, 403, path)
    assert.equal((await call(method, path.replace(first, 'not-a-uuid'), keys.router)).statusCode, 400, path)
    assert.equal((await call(method, path.replace(first, missing), keys.router)).statusCode, 404, path)
  }
  assert.equal((await call('POST', `/orchestrator/v1/leads/${first}/route`, keys.router)).statusCode, 409, 'already assigned')
  assert.equal((await call('POST', `/orchestrator/v1/leads/${unroutable}/route`, keys.router)).statusCode, 409, 'no agent')

  assert.equal((await call('POST', '/orchestrator/v1/route-batch', keys.router, { limit: 5, state: 'CA' })).statusCode, 200)
  assert.equal((await call('POST', '/orchestrator/v1/route-batch', keys.router, { limit: 100000 })).statusCode, 400)
  assert.equal((await call('POST', '/orchestrator/v1/route-batch', undefined, {})).statusCode, 401)
  assert.equal((await call('POST', '/orchestrator/v1/route-batch', keys.none, {})).statusCode, 403)

  // The WebSocket: the upgrade answers 101 and says hello; without the upgrade, the route's documented 426.
  const socket = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers: as(keys.router) })
  const status = await new Promise<number>((resolve, reject) => {
    socket.once('upgrade', (res) => resolve(res.statusCode ?? 0))
    socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    socket.once('error', reject)
  })
  contract.record('GET', '/orchestrator/v1/events', status)
  assert.equal(status, 101)
  socket.close()
  // A handshake ws cannot accept: the documented 400, with the platform's body and its code.
  const refused = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    get(`${url}/orchestrator/v1/events`, { headers: { ...as(keys.router), connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '99' } }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() }).on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    }).on('error', reject)
  })
  contract.record('GET', '/orchestrator/v1/events', refused.status)
  assert.equal(refused.status, 400)
  assert.equal((JSON.parse(refused.body) as { code: string }).code, 'WEBSOCKET_HANDSHAKE_INVALID')
  assert.equal((await call('GET', '/orchestrator/v1/events', keys.router)).statusCode, 426)
  assert.equal((await call('GET', '/orchestrator/v1/events')).statusCode, 401)
  assert.equal((await call('GET', '/orchestrator/v1/events', keys.none)).statusCode, 403)

  // The data-service unreachable: the documented 503 with its code and Retry-After.
  const { app: stranded } = await startOrchestrator(t, db, `http://127.0.0.1:${await freePort()}`, { DATA_SERVICE_RETRIES: '0', DATA_SERVICE_TIMEOUT_MS: '500', EVENTS_CHANNEL: uniqueName('oa-events') })
  for (const [method, path] of [['GET', `/orchestrator/v1/leads/${second}/score`], ['POST', `/orchestrator/v1/leads/${second}/route`], ['POST', '/orchestrator/v1/route-batch']] as const) {
    const res = await contract.inject(stranded, { method, url: path, headers: as(keys.router), ...(method === 'POST' && path.endsWith('batch') ? { payload: {} } : {}) })
    assert.equal(res.statusCode, 503, `${method} ${path}`)
    assert.equal(res.json<{ code: string }>().code, 'UPSTREAM_UNAVAILABLE')
    assert.ok(res.headers['retry-after'])
  }

  await tight.inject('/orchestrator/v1/route-batch')
  for (const [method, path] of [['GET', `/orchestrator/v1/leads/${second}/score`], ['POST', `/orchestrator/v1/leads/${second}/route`], ['POST', '/orchestrator/v1/route-batch'], ['GET', '/orchestrator/v1/events']] as const) {
    const res = await contract.inject(tight, { method, url: path })
    assert.equal(res.statusCode, 429, `${method} ${path}`)
  }
  // The routes the limiter skips still refuse key lookups over the address's budget.
  await contract.refuseLookups(tight, [['GET', '/health/live'], ['GET', '/health/ready'], ['GET', '/metrics']])
})

test('a route the contract test does not drive fails it: every orchestrator operation answered its success and its client errors', async () => {
  assert.deepEqual(contract.uncovered(), [])
})
