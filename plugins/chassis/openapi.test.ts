import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { apiKeysPlugin } from '../api-keys/index.js'
import { dbPoolPlugin } from '../db-pool/index.js'
import { MemoryStore, rateLimitPlugin, type RateLimitPluginOptions } from '../rate-limit/index.js'
import { TEST_DATABASE_URL } from '../../test/helpers/database.js'
import { buildService, type Registrar } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'

interface Doc {
  components: { securitySchemes: Record<string, { name: string }> }
  paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown>, 'x-error-codes'?: string[] }> }>>
}

const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
const errorBody = { type: 'object', properties: { code: { type: 'string' } } }

/** A service with one route that needs a key, documented at /v1/openapi.json, and the plugins given. */
async function documented (t: { after: (fn: () => Promise<void>) => void }, plugins: Registrar[], routes: Registrar[] = []): Promise<Doc> {
  const app = await buildService({
    name: 'openapi-test',
    config,
    openapi: { prefix: '/v1', title: 'test', description: 'test' },
    plugins: [(app) => app.register(dbPoolPlugin, { connectionString: TEST_DATABASE_URL, name: 'openapi', min: 0 }), ...plugins],
    routes: [(app: FastifyInstance) => app.get('/v1/things', { config: { requiredScope: 'things:read' }, schema: { response: { 200: { type: 'object' }, 429: errorBody } } }, async () => ({})), ...routes]
  })
  t.after(() => app.close())
  const res = await app.inject('/v1/openapi.json')
  assert.equal(res.statusCode, 200)
  return res.json<Doc>()
}

const keys = (app: FastifyInstance, header?: string, lookupBudget = false): unknown => app.register(apiKeysPlugin, { followChanges: false, cache: false, ...(lookupBudget ? {} : { lookupBudget: false }), ...(header ? { header } : {}) })
const limiter = (app: FastifyInstance, headers?: RateLimitPluginOptions['headers'], more: Partial<RateLimitPluginOptions> = {}): unknown => app.register(rateLimitPlugin, { redis: false, ...(headers ? { headers } : {}), ...more })
const codesOf = (doc: Doc, path: string, status: string): string[] | undefined => doc.paths[path]?.get?.responses[status]?.['x-error-codes']
const fieldsOf = (doc: Doc, path: string, status: string): string[] => Object.keys(doc.paths[path]?.get?.responses[status]?.headers ?? {}).sort()

test('the OpenAPI document names the header api-keys reads the key from, not always x-api-key', async (t) => {
  const doc = await documented(t, [(app) => keys(app, 'X-Partner-Key')])
  assert.equal(doc.components.securitySchemes.apiKey?.name, 'x-partner-key')
  const shipped = await documented(t, [(app) => keys(app)])
  assert.equal(shipped.components.securitySchemes.apiKey?.name, 'x-api-key')
})

test('the OpenAPI document lists the rate-limit fields the limiter sends, and none without a limiter', async (t) => {
  const answer = (doc: Doc, status: string) => doc.paths['/v1/things']?.get?.responses[status]
  const headersOf = (doc: Doc, status: string): string[] => Object.keys(answer(doc, status)?.headers ?? {}).sort()
  const xRateLimit = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']
  const draft = ['RateLimit', 'RateLimit-Policy']
  const all = [...draft, ...xRateLimit].sort()

  const both = await documented(t, [(app) => keys(app), (app) => limiter(app)])
  assert.deepEqual(headersOf(both, '200'), all)
  assert.deepEqual(headersOf(both, '429'), [...all, 'Retry-After'].sort())
  assert.deepEqual(answer(both, '429')?.['x-error-codes'], ['RATE_LIMITED'])

  const trio = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit')])
  assert.deepEqual(headersOf(trio, '200'), xRateLimit)
  assert.deepEqual(headersOf(trio, '429'), [...xRateLimit, 'Retry-After'].sort())

  const onlyDraft = await documented(t, [(app) => keys(app), (app) => limiter(app, 'draft')])
  assert.deepEqual(headersOf(onlyDraft, '200'), draft)

  // Neither a limiter nor a lookup budget: nothing of the platform's answers 429, nor sends a rate-limit field.
  const none = await documented(t, [(app) => keys(app)])
  assert.deepEqual(headersOf(none, '200'), [])
  assert.deepEqual(headersOf(none, '429'), [])
  assert.deepEqual(answer(none, '429')?.['x-error-codes'], [])
})

test('without a limiter, the key lookups\' 429 is documented with the fields it sends: all five and Retry-After', async (t) => {
  const doc = await documented(t, [(app) => keys(app, undefined, true)])
  const answer = (status: string) => doc.paths['/v1/things']?.get?.responses[status]
  assert.deepEqual(Object.keys(answer('200')?.headers ?? {}), [])
  assert.deepEqual(Object.keys(answer('429')?.headers ?? {}).sort(), ['RateLimit', 'RateLimit-Policy', 'Retry-After', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
  assert.deepEqual(answer('429')?.['x-error-codes'], ['API_KEY_LOOKUPS_EXCEEDED'])
})

test('the key lookups\' 429 sends the limiter\'s fields, as the document says', async (t) => {
  const app = await buildService({
    name: 'openapi-test',
    config,
    plugins: [
      (app) => app.register(dbPoolPlugin, { connectionString: TEST_DATABASE_URL, name: 'openapi', min: 0 }),
      (app) => app.register(apiKeysPlugin, { followChanges: false, cache: false, lookupBudget: { limit: 1, windowMs: 60_000, prefix: `openapi-test:${process.pid}:` } }),
      (app) => limiter(app, 'x-ratelimit')
    ],
    routes: [(app: FastifyInstance) => app.get('/v1/things', { config: { requiredScope: 'things:read' } }, async () => ({}))]
  })
  t.after(() => app.close())
  // Two invented keys from one address: the second lookup is over the budget of one.
  const invented = (n: string): string => `lck_inventedkey${n}_${'a'.repeat(43)}`
  await app.inject({ url: '/v1/things', headers: { 'x-api-key': invented('1') } })
  const refused = await app.inject({ url: '/v1/things', headers: { 'x-api-key': invented('2') } })
  assert.equal(refused.json<{ code: string }>().code, 'API_KEY_LOOKUPS_EXCEEDED')
  assert.equal(refused.statusCode, 429)
  assert.ok(refused.headers['x-ratelimit-limit'] !== undefined && refused.headers['retry-after'] !== undefined)
  assert.equal(refused.headers.ratelimit, undefined)
  assert.equal(refused.headers['ratelimit-policy'], undefined)
})

test('RATE_LIMIT_UNAVAILABLE is listed only where a policy fails closed on a store that can fail, not wherever a limiter is registered', async (t) => {
  const closed = { name: 'closedOwn', limit: 5, windowMs: 1000, onStoreFailure: 'closed' as const }
  const routes: Registrar[] = [
    (app) => app.get('/v1/own-closed', { config: { rateLimit: closed } }, async () => ({})),
    (app) => app.get('/v1/open', async () => ({}))
  ]
  // A shared store (one given: it can fail) and the shipped default, every policy failing open.
  const open = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { store: new MemoryStore() })], routes)
  assert.equal(codesOf(open, '/v1/things', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), false)
  assert.equal(codesOf(open, '/v1/open', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), false)
  assert.equal(codesOf(open, '/v1/own-closed', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), true)

  // A global policy that fails closed: every limited route may answer it.
  const closedGlobal = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { store: new MemoryStore(), global: { ...closed, name: 'closedGlobal' } })], routes)
  assert.equal(codesOf(closedGlobal, '/v1/things', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), true)
  assert.equal(codesOf(closedGlobal, '/v1/open', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), true)

  // A shadow policy refuses nothing, not even when its store fails, and its figures are not sent: a route limited by
  // shadow policies alone answers without the fields.
  const shadow = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit', { store: new MemoryStore(), global: false })], [
    (app) => app.get('/v1/shadow', { config: { rateLimit: { ...closed, name: 'shadowOwn', shadow: true } } }, async () => ({}))
  ])
  assert.equal(codesOf(shadow, '/v1/shadow', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), false)
  assert.equal(shadow.paths['/v1/shadow']?.get?.responses['429'], undefined)
  assert.deepEqual(fieldsOf(shadow, '/v1/shadow', '200'), [])

  // Counted in process, the store cannot fail: nothing answers it.
  const inProcess = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { global: { ...closed, name: 'closedGlobal' } })], routes)
  assert.equal(codesOf(inProcess, '/v1/things', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), false)
  assert.equal(codesOf(inProcess, '/v1/own-closed', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), false)
})

test('a globalFor that may return a closed policy of its own is documented as answering RATE_LIMIT_UNAVAILABLE, unless its policies are declared', async (t) => {
  const closedOwn = { name: 'partnerClosed', limit: 5, windowMs: 1000, onStoreFailure: 'closed' as const }
  const failing = { check: async () => { throw new Error('store down') } }
  const unavailableOn = (doc: Doc): boolean | undefined => codesOf(doc, '/v1/things', '503')?.includes('RATE_LIMIT_UNAVAILABLE')
  // Not known: any policy may come back, so the route may fail closed.
  const unknown = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { store: new MemoryStore(), globalFor: () => closedOwn })])
  assert.equal(unavailableOn(unknown), true)
  // Declared: a closed one is listed, open ones are not.
  const declaredClosed = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { store: new MemoryStore(), globalFor: () => closedOwn, globalForPolicies: [closedOwn] })])
  assert.equal(unavailableOn(declaredClosed), true)
  const declaredOpen = await documented(t, [(app) => keys(app), (app) => limiter(app, 'both', { store: new MemoryStore(), globalFor: () => 'apiKey', globalForPolicies: [] })])
  assert.equal(unavailableOn(declaredOpen), false)
  // And the limiter answers so: the custom policy refuses 503 when its store fails, with Retry-After.
  const warnings: unknown[] = []
  const app = await buildService({
    name: 'openapi-test',
    config,
    plugins: [(app) => limiter(app, 'both', { store: failing, global: false, globalFor: () => closedOwn, globalForPolicies: [] })],
    routes: [(app) => app.get('/v1/picked', async () => ({}))]
  })
  t.after(() => app.close())
  const originalWarn = app.log.warn.bind(app.log)
  app.log.warn = ((obj: unknown, ...rest: unknown[]) => { warnings.push(obj); return (originalWarn as (...a: unknown[]) => void)(obj, ...rest) }) as typeof app.log.warn
  for (let i = 0; i < 2; i++) {
    const res = await app.inject('/v1/picked')
    assert.equal(res.statusCode, 503)
    assert.equal(res.json<{ code: string }>().code, 'RATE_LIMIT_UNAVAILABLE')
    assert.ok(Number(res.headers['retry-after']) >= 1)
  }
  // Declared as none, yet returned: said once.
  assert.equal(warnings.filter((w) => (w as { code?: string }).code === 'RATE_LIMIT_UNDECLARED_POLICY').length, 1)
})

test('every 503 in the OpenAPI document lists Retry-After, since every 503 the platform answers carries it', async (t) => {
  const closed = { name: 'closedOwn', limit: 5, windowMs: 1000, onStoreFailure: 'closed' as const }
  const doc = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit', { store: new MemoryStore() })], [
    (app) => app.get('/v1/own-closed', { config: { rateLimit: closed } }, async () => ({}))
  ])
  let seen = 0
  for (const item of Object.values(doc.paths)) {
    for (const operation of Object.values(item)) {
      const unavailable = operation.responses['503']
      if (unavailable === undefined) continue
      seen++
      assert.ok(Object.keys(unavailable.headers ?? {}).includes('Retry-After'), JSON.stringify(unavailable))
    }
  }
  assert.ok(seen >= 3, `${seen} operations with a 503`)
  assert.deepEqual(codesOf(doc, '/v1/own-closed', '503')?.includes('RATE_LIMIT_UNAVAILABLE'), true)
  assert.deepEqual(fieldsOf(doc, '/v1/own-closed', '503'), ['Retry-After', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
})

test('with global: false, a route without a policy of its own is documented with no rate-limit code or field', async (t) => {
  const own = { name: 'ownPolicy', limit: 5, windowMs: 1000 }
  const doc = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit', { global: false })], [
    (app) => app.get('/v1/own', { config: { rateLimit: own } }, async () => ({}))
  ])
  assert.deepEqual(codesOf(doc, '/v1/things', '429'), [])
  assert.deepEqual(fieldsOf(doc, '/v1/things', '200'), [])
  assert.deepEqual(codesOf(doc, '/v1/own', '429'), ['RATE_LIMITED'])
  assert.deepEqual(fieldsOf(doc, '/v1/own', '200'), ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
  // As the limiter answers: no field where the document lists none.
  const app = await buildService({
    name: 'openapi-test',
    config,
    plugins: [(app) => limiter(app, 'x-ratelimit', { global: false })],
    routes: [(app) => app.get('/v1/none', async () => ({})), (app) => app.get('/v1/own', { config: { rateLimit: own } }, async () => ({}))]
  })
  t.after(() => app.close())
  assert.equal((await app.inject('/v1/none')).headers['x-ratelimit-limit'], undefined)
  assert.equal((await app.inject('/v1/own')).headers['x-ratelimit-limit'], '5')
  // A globalFor may pick a policy for any request: every route may be counted.
  const picked = await documented(t, [(app) => keys(app), (app) => limiter(app, 'x-ratelimit', { global: false, globalFor: () => 'apiKey' })])
  assert.deepEqual(codesOf(picked, '/v1/things', '429'), ['RATE_LIMITED'])
})

test('the key lookups\' 429 is listed, and answered, on a route the limiter skips', async (t) => {
  const skipped: Registrar = (app) => app.get('/v1/skipped', { config: { rateLimit: false } }, async () => ({}))
  const doc = await documented(t, [(app) => keys(app, undefined, true), (app) => limiter(app, 'x-ratelimit')], [skipped])
  assert.deepEqual(codesOf(doc, '/v1/skipped', '429'), ['API_KEY_LOOKUPS_EXCEEDED'])
  assert.deepEqual(fieldsOf(doc, '/v1/skipped', '429'), ['Retry-After', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
  assert.deepEqual(fieldsOf(doc, '/v1/skipped', '200'), [])
  // A route that answers the refusal with another status of its own (NGINX's auth subrequest: 403) lists no 429.
  const otherwise = await documented(t, [(app) => keys(app, undefined, true)], [
    (app) => app.get('/v1/auth', { config: { rateLimit: false, errorCodes: { 403: ['API_KEY_LOOKUPS_EXCEEDED'] } } }, async () => ({}))
  ])
  assert.equal(otherwise.paths['/v1/auth']?.get?.responses['429'], undefined)

  const app = await buildService({
    name: 'openapi-test',
    config,
    plugins: [
      (app) => app.register(dbPoolPlugin, { connectionString: TEST_DATABASE_URL, name: 'openapi', min: 0 }),
      (app) => app.register(apiKeysPlugin, { followChanges: false, cache: false, lookupBudget: { limit: 1, windowMs: 60_000, prefix: `openapi-skip:${process.pid}:` } }),
      (app) => limiter(app, 'x-ratelimit')
    ],
    routes: [skipped]
  })
  t.after(() => app.close())
  const invented = (n: string): string => `lck_inventedkey${n}_${'b'.repeat(43)}`
  await app.inject({ url: '/v1/skipped', headers: { 'x-api-key': invented('1') } })
  const refused = await app.inject({ url: '/v1/skipped', headers: { 'x-api-key': invented('2') } })
  assert.equal(refused.statusCode, 429)
  assert.equal(refused.json<{ code: string }>().code, 'API_KEY_LOOKUPS_EXCEEDED')
  assert.ok(refused.headers['x-ratelimit-limit'] !== undefined && refused.headers['retry-after'] !== undefined)
})
