// The OpenTelemetry SDK must start before pg, ioredis and Fastify load: this file imports them only dynamically,
// after the SDK is up (node:test runs each test file in its own process).
import { after, before, test } from 'node:test'
import { request } from 'node:http'
import { SpanKind } from '@opentelemetry/api'
import assert from 'node:assert/strict'
import { register } from 'node:module'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { createInstrumentations, QUERY_SPANS_SCOPE, SERVER_SPANS_SCOPE, startQuerySpans } from '@lead-chassis/plugins/telemetry/instrumentations'

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
const exporter = new InMemorySpanExporter()
const sdk = new NodeSDK({ spanProcessors: [new SimpleSpanProcessor(exporter)], instrumentations: await createInstrumentations() })
sdk.start()
startQuerySpans()

let app: Awaited<ReturnType<typeof import('./app.js')['buildApp']>>
let db: Awaited<ReturnType<typeof import('../../test/helpers/database.js')['createTestSchema']>>
let leadId: string
const scope = (s: ReadableSpan): string => s.instrumentationScope.name

before(async () => {
  const { buildApp } = await import('./app.js')
  const { createTestSchema, testApiConfig, uniqueName } = await import('../../test/helpers/database.js')
  db = await createTestSchema()
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  leadId = lead?.id ?? ''
  app = await buildApp(testApiConfig(db, { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('spans')}:` }))
  // Redis connected and the invalidation link up: a cache that cannot reach Redis yet skips it (no Redis span).
  await app.ready()
  assert.ok(await app.cache.ready(5000), 'the cache reached Redis')
  for (let i = 0; i < 250 && app.redis?.status !== 'ready'; i++) await new Promise((resolve) => setTimeout(resolve, 20))
})

after(async () => {
  await app?.close()
  await db?.drop()
  await sdk.shutdown()
})

/** The spans of the trace that `server` roots, and whether each descends from it. */
function traceOf (server: ReadableSpan): { trace: ReadableSpan[], descends: (s: ReadableSpan) => boolean } {
  const trace = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === server.spanContext().traceId)
  const byId = new Map(trace.map((s) => [s.spanContext().spanId, s]))
  const descends = (s: ReadableSpan): boolean => {
    for (let p = s.parentSpanContext?.spanId; p; p = byId.get(p)?.parentSpanContext?.spanId) if (p === server.spanContext().spanId) return true
    return false
  }
  return { trace, descends }
}

test('a cache-miss GET is one trace: the server span and, under it, the Redis and PostgreSQL spans', async () => {
  const { SERVICE_HEADERS } = await import('../../test/helpers/database.js')
  exporter.reset()
  const res = await app.inject({ url: `/api/v1/leads/${leadId}`, headers: SERVICE_HEADERS })
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['x-cache'], 'MISS')
  const spans = exporter.getFinishedSpans()
  const server = spans.find((s) => scope(s) === SERVER_SPANS_SCOPE && s.name === 'GET /api/v1/leads/:id')
  assert.ok(server, `no server span among ${spans.map((s) => s.name).join(', ')}`)
  assert.equal(server.kind, SpanKind.SERVER)
  assert.equal(server.attributes['http.route'], '/api/v1/leads/:id')
  const { trace, descends } = traceOf(server)
  // One span per request from Fastify: the chassis's hooks (request id, metrics, API key, rate limit) and the
  // handler make none, and no pool-connect spans.
  assert.deepEqual(trace.filter((s) => scope(s) === SERVER_SPANS_SCOPE).map((s) => s.name), ['GET /api/v1/leads/:id'])
  assert.deepEqual(trace.filter((s) => s.name.startsWith('pg-pool') || s.name.startsWith('pg.connect')), [])
  const redis = trace.filter((s) => scope(s) === '@opentelemetry/instrumentation-ioredis')
  const pg = trace.filter((s) => scope(s) === QUERY_SPANS_SCOPE)
  assert.deepEqual(spans.filter((s) => scope(s) === '@opentelemetry/instrumentation-pg'), [], 'one span per query, from the seam only')
  assert.ok(redis.length > 0, 'Redis spans in the trace')
  assert.ok(pg.length > 0, 'PostgreSQL spans in the trace')
  assert.ok([...redis, ...pg].every(descends), 'Redis and pg spans sit under the server span')
  assert.equal(spans.filter((s) => s.kind === SpanKind.SERVER).length, 1, 'one server span')
  const { normalizeQuery } = await import('@lead-chassis/plugins/telemetry')
  const query = pg.find((s) => s.attributes['db.query.fingerprint'] !== undefined && String(s.attributes['db.statement'] ?? s.attributes['db.query.text'] ?? '').includes('FROM leads'))
  assert.ok(query, 'the pg span of the lead query carries a fingerprint')
  const text = String(query.attributes['db.statement'] ?? query.attributes['db.query.text'])
  assert.equal(query.attributes['db.query.fingerprint'], normalizeQuery(text).fingerprint, 'the same fingerprint as the query statistics')
  assert.equal(query.kind, SpanKind.CLIENT)
  assert.equal(query.attributes['db.system.name'], 'postgresql')
  assert.equal(query.attributes['db.operation.name'], 'SELECT')
  assert.equal(query.attributes['server.address'], '127.0.0.1')
  assert.equal(typeof query.attributes['server.port'], 'number')
  assert.equal(query.name, `SELECT ${String(query.attributes['db.namespace'])}`)
})

test('a POST whose body arrives in two packets keeps its queries in the request\'s trace', async () => {
  const { SERVICE_HEADERS } = await import('../../test/helpers/database.js')
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  exporter.reset()
  const body = JSON.stringify({ firstName: 'Ann', lastName: 'Lee', email: `ann.${Date.now()}@example.com`, phone: '+1 (555) 123-4567', product: 'auto', state: 'CA' })
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${address}/api/v1/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    // The body is parsed after a later socket read than the one that started the request.
    req.write(body.slice(0, 20))
    setTimeout(() => req.end(body.slice(20)), 100)
  })
  assert.equal(status, 201)
  const spans = exporter.getFinishedSpans()
  const server = spans.find((s) => scope(s) === SERVER_SPANS_SCOPE && s.name === 'POST /api/v1/leads')
  assert.ok(server, `no server span among ${spans.map((s) => s.name).join(', ')}`)
  const { trace, descends } = traceOf(server)
  const inserts = trace.filter((s) => scope(s) === QUERY_SPANS_SCOPE && String(s.attributes['db.query.text'] ?? '').includes('INSERT INTO leads'))
  assert.equal(inserts.length, 1, `the insert is in the request's trace: ${spans.map((s) => s.name).join(', ')}`)
  assert.ok(inserts.every(descends))
  const writes = spans.filter((s) => scope(s) === QUERY_SPANS_SCOPE && String(s.attributes['db.query.text'] ?? '').includes('INSERT INTO lead'))
  assert.ok(writes.length >= 2 && writes.every((s) => s.spanContext().traceId === server.spanContext().traceId && descends(s)), 'the lead and its activity are written inside the trace')
})
