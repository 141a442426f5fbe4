// The OpenTelemetry SDK must start before pg, ioredis and Fastify load: this file imports them only dynamically,
// after the SDK is up (node:test runs each test file in its own process).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { register } from 'node:module'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { createInstrumentations } from '../../plugins/telemetry/instrumentations.js'

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
const exporter = new InMemorySpanExporter()
const sdk = new NodeSDK({ spanProcessors: [new SimpleSpanProcessor(exporter)], instrumentations: await createInstrumentations() })
sdk.start()

test('a cache-miss GET is one trace: the request span and, under it, the Redis and PostgreSQL spans', async (t) => {
  const { buildApp } = await import('./app.js')
  const { createTestSchema, testApiConfig, uniqueName, SERVICE_HEADERS } = await import('../../test/helpers/database.js')
  const db = await createTestSchema()
  t.after(() => db.drop())
  t.after(() => sdk.shutdown())
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  const app = await buildApp(testApiConfig(db, { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('spans')}:` }))
  t.after(() => app.close())
  // Redis connected and the invalidation link up: a cache that cannot reach Redis yet skips it (no Redis span).
  await app.ready()
  assert.ok(await app.cache.ready(5000), 'the cache reached Redis')
  for (let i = 0; i < 250 && app.redis?.status !== 'ready'; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  exporter.reset()
  const res = await app.inject({ url: `/api/v1/leads/${lead?.id}`, headers: SERVICE_HEADERS })
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['x-cache'], 'MISS')
  const spans = exporter.getFinishedSpans()
  const scope = (s: ReadableSpan) => s.instrumentationScope.name
  const request = spans.find((s) => scope(s) === '@fastify/otel' && s.name === 'request')
  assert.ok(request, `no request span among ${spans.map((s) => s.name).join(', ')}`)
  const trace = spans.filter((s) => s.spanContext().traceId === request.spanContext().traceId)
  // The chassis's own hooks (request id, metrics, API key, rate limit) make no span; the route's handler does.
  const fastifySpans = trace.filter((s) => scope(s) === '@fastify/otel').map((s) => s.name)
  assert.deepEqual(fastifySpans.filter((n) => n !== 'request' && !n.startsWith('handler - ')), [], `Fastify spans: ${fastifySpans.join(', ')}`)
  assert.equal(fastifySpans.filter((n) => n.startsWith('handler - ')).length, 1, `Fastify spans: ${fastifySpans.join(', ')}`)
  const redis = trace.filter((s) => scope(s) === '@opentelemetry/instrumentation-ioredis')
  const pg = trace.filter((s) => scope(s) === '@opentelemetry/instrumentation-pg' && s.name.startsWith('pg.query'))
  assert.ok(redis.length > 0, 'Redis spans in the trace')
  assert.ok(pg.length > 0, 'PostgreSQL spans in the trace')
  // Each of them descends from the request span.
  const byId = new Map(trace.map((s) => [s.spanContext().spanId, s]))
  const descends = (s: ReadableSpan): boolean => {
    for (let p = s.parentSpanContext?.spanId; p; p = byId.get(p)?.parentSpanContext?.spanId) if (p === request.spanContext().spanId) return true
    return false
  }
  assert.ok([...redis, ...pg].every(descends), 'Redis and pg spans sit under the request span')
  const { normalizeQuery } = await import('../../plugins/telemetry/index.js')
  const query = pg.find((s) => s.attributes['db.query.fingerprint'] !== undefined && String(s.attributes['db.statement'] ?? s.attributes['db.query.text'] ?? '').includes('FROM leads'))
  assert.ok(query, 'the pg span of the lead query carries a fingerprint')
  const text = String(query.attributes['db.statement'] ?? query.attributes['db.query.text'])
  assert.equal(query.attributes['db.query.fingerprint'], normalizeQuery(text).fingerprint, 'the same fingerprint as the query statistics')
})
