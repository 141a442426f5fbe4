import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { DOCS_CSP } from '@lead-chassis/plugins/chassis'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema

before(async () => { db = await createTestSchema() })
after(async () => { await db?.drop() })

async function api (t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string> = {}): Promise<FastifyInstance> {
  // A limit of one request a minute: whatever is limited answers 429 from the second request on.
  const app = await buildApp(testApiConfig(db, { REDIS_URL, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '1', RATE_LIMIT_PREFIX: `${uniqueName('oarl')}:`, ...env }))
  t.after(() => app.close())
  return app
}

test('the reference page and the OpenAPI document need no key and are never rate limited', async (t) => {
  const app = await api(t)
  for (let i = 0; i < 3; i++) {
    const doc = await app.inject('/api/v1/openapi.json')
    assert.equal(doc.statusCode, 200)
    assert.equal(doc.json<{ openapi: string }>().openapi, '3.1.0')
    const page = await app.inject('/api/v1/docs')
    assert.equal(page.statusCode, 200)
    assert.match(page.headers['content-type'] as string, /text\/html/)
  }
  const page = (await app.inject('/api/v1/docs/')).body
  const assets = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '')
  assert.ok(assets.length >= 4, page)
  for (const asset of [...assets, './json', './static/swagger-initializer.js']) {
    assert.doesNotMatch(asset, /^(https?:)?\/\//, 'every asset comes from the service itself (the CSP allows only self)')
    const res = await app.inject(new URL(asset, 'http://x/api/v1/docs/').pathname)
    assert.equal(res.statusCode, 200, asset)
  }
  assert.equal((await app.inject('/api/v1/leads')).statusCode, 401, 'the limiter is on')
  assert.equal((await app.inject('/api/v1/leads')).statusCode, 429, 'the limiter is on')
})

test('the reference page is sent with a CSP that lets its own script and styles run, and the API keeps default-src none', async (t) => {
  const app = await api(t)
  const page = await app.inject('/api/v1/docs')
  assert.equal(page.headers['content-security-policy'], DOCS_CSP)
  assert.match(DOCS_CSP, /script-src 'self'(;|$)/)
  assert.match(DOCS_CSP, /connect-src 'self'/)
  const script = await app.inject('/api/v1/docs/static/swagger-initializer.js')
  assert.equal(script.headers['content-security-policy'], DOCS_CSP)
  assert.match(String((await app.inject('/api/v1/openapi.json')).headers['content-security-policy']), /^default-src 'none'/)
})

test('the reference page offers the x-api-key scheme for trying calls', async (t) => {
  const app = await api(t)
  const doc = (await app.inject('/api/v1/docs/json')).json<{ components: { securitySchemes: Record<string, { type: string, in: string, name: string }> } }>()
  assert.deepEqual(doc.components.securitySchemes.apiKey && { ...doc.components.securitySchemes.apiKey, description: undefined }, { type: 'apiKey', in: 'header', name: 'x-api-key', description: undefined })
})

test('OPENAPI_UI_ENABLED=false turns the reference page off and keeps the document', async (t) => {
  const app = await api(t, { OPENAPI_UI_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false' })
  assert.equal((await app.inject('/api/v1/docs')).statusCode, 404)
  assert.equal((await app.inject('/api/v1/docs/static/swagger-initializer.js')).statusCode, 404)
  assert.equal((await app.inject('/api/v1/openapi.json')).statusCode, 200)
})

test('the OpenAPI document is not re-serialized and re-sent whole to every anonymous request: it carries an ETag and answers 304 to it', async (t) => {
  const app = await api(t)
  const first = await app.inject('/api/v1/openapi.json')
  const etag = first.headers.etag as string
  assert.match(etag, /^"[A-Za-z0-9_-]+"$/)
  const again = await app.inject('/api/v1/openapi.json')
  assert.equal(again.headers.etag, etag)
  assert.equal(again.body, first.body)
  const revalidated = await app.inject({ url: '/api/v1/openapi.json', headers: { 'if-none-match': `W/${etag}` } })
  assert.equal(revalidated.statusCode, 304)
  assert.equal(revalidated.body, '')
  const stale = await app.inject({ url: '/api/v1/openapi.json', headers: { 'if-none-match': '"other"' } })
  assert.equal(stale.statusCode, 200)
  assert.equal(stale.json<{ openapi: string }>().openapi, '3.1.0')
})
