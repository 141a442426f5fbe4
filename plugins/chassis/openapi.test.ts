import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { apiKeysPlugin } from '../api-keys/index.js'
import { dbPoolPlugin } from '../db-pool/index.js'
import { rateLimitPlugin, type RateLimitPluginOptions } from '../rate-limit/index.js'
import { TEST_DATABASE_URL } from '../../test/helpers/database.js'
import { buildService, type Registrar } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'

interface Doc {
  components: { securitySchemes: Record<string, { name: string }> }
  paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>>
}

const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
const errorBody = { type: 'object', properties: { code: { type: 'string' } } }

/** A service with one route that needs a key, documented at /v1/openapi.json, and the plugins given. */
async function documented (t: { after: (fn: () => Promise<void>) => void }, plugins: Registrar[]): Promise<Doc> {
  const app = await buildService({
    name: 'openapi-test',
    config,
    openapi: { prefix: '/v1', title: 'test', description: 'test' },
    plugins: [(app) => app.register(dbPoolPlugin, { connectionString: TEST_DATABASE_URL, name: 'openapi', min: 0 }), ...plugins],
    routes: [(app: FastifyInstance) => app.get('/v1/things', { config: { requiredScope: 'things:read' }, schema: { response: { 200: { type: 'object' }, 429: errorBody } } }, async () => ({}))]
  })
  t.after(() => app.close())
  const res = await app.inject('/v1/openapi.json')
  assert.equal(res.statusCode, 200)
  return res.json<Doc>()
}

const keys = (app: FastifyInstance, header?: string): unknown => app.register(apiKeysPlugin, { followChanges: false, cache: false, lookupBudget: false, ...(header ? { header } : {}) })
const limiter = (app: FastifyInstance, headers?: RateLimitPluginOptions['headers']): unknown => app.register(rateLimitPlugin, { redis: false, ...(headers ? { headers } : {}) })

test('the OpenAPI document names the header api-keys reads the key from, not always x-api-key', async (t) => {
  const doc = await documented(t, [(app) => keys(app, 'X-Partner-Key')])
  assert.equal(doc.components.securitySchemes.apiKey?.name, 'x-partner-key')
  const shipped = await documented(t, [(app) => keys(app)])
  assert.equal(shipped.components.securitySchemes.apiKey?.name, 'x-api-key')
})

test('the OpenAPI document lists the rate-limit fields the limiter sends, and none without a limiter', async (t) => {
  const headersOf = (doc: Doc, status: string): string[] => Object.keys(doc.paths['/v1/things']?.get?.responses[status]?.headers ?? {}).sort()
  const xRateLimit = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']
  const draft = ['RateLimit', 'RateLimit-Policy']

  const both = await documented(t, [(app) => keys(app), (app) => limiter(app)])
  assert.deepEqual(headersOf(both, '200'), [...draft, ...xRateLimit].sort())
  assert.deepEqual(headersOf(both, '429'), [...draft, 'Retry-After', ...xRateLimit].sort())

  const trio = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit')])
  assert.deepEqual(headersOf(trio, '200'), xRateLimit)

  const onlyDraft = await documented(t, [(app) => keys(app), (app) => limiter(app, 'draft')])
  assert.deepEqual(headersOf(onlyDraft, '200'), draft)

  // No limiter: no rate-limit field is promised; a 429 (the key lookups' refusal) still says when to come back.
  const none = await documented(t, [(app) => keys(app)])
  assert.deepEqual(headersOf(none, '200'), [])
  assert.deepEqual(headersOf(none, '429'), ['Retry-After'])
})
