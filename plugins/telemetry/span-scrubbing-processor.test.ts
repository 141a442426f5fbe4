// The SDK starts before pg loads: pg is imported only dynamically, below (each test file runs in its own process).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { register } from 'node:module'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { createInstrumentations } from './instrumentations.js'
import { SpanScrubbingProcessor } from './span-scrubbing-processor.js'

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
process.env.OTEL_PG_INSTRUMENTATION = 'true'
process.env.OTEL_METRICS_EXPORTER = 'none'
process.env.OTEL_LOGS_EXPORTER = 'none'
const sdkExporter = new InMemorySpanExporter()
const sdk = new NodeSDK({ spanProcessors: [new SpanScrubbingProcessor(), new SimpleSpanProcessor(sdkExporter)], instrumentations: await createInstrumentations() })
sdk.start()

test('a key in a query string is scrubbed from every URL attribute of a span before it is exported, set at start or later', async () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SpanScrubbingProcessor(), new SimpleSpanProcessor(exporter)] })
  const span = provider.getTracer('t').startSpan('GET', {
    attributes: { 'url.path': '/api/v1/leads?api_key=lck_x&limit=5', 'url.full': 'http://h/a?token=t', 'http.target': '/a?password=p', 'http.route': '/api/v1/leads' }
  })
  span.setAttribute('url.query', 'secret=s&state=CA')
  span.setAttribute('http.url', 'http://h/b?access_token=a')
  span.end()
  await provider.forceFlush()
  const [exported] = exporter.getFinishedSpans()
  assert.deepEqual(exported?.attributes, {
    'url.path': '/api/v1/leads?api_key=[REDACTED]&limit=5',
    'url.full': 'http://h/a?token=[REDACTED]',
    'http.target': '/a?password=[REDACTED]',
    'http.route': '/api/v1/leads',
    'url.query': 'secret=[REDACTED]&state=CA',
    'http.url': 'http://h/b?access_token=[REDACTED]'
  })
  await provider.shutdown()
})

test('a secret in any URL attribute is scrubbed on spans of every instrumentation and shape, the chassis\'s own scopes included', async () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SpanScrubbingProcessor(), new SimpleSpanProcessor(exporter)] })
  const shapes: Array<[string, Record<string, string | number>]> = [
    ['lead-chassis/fastify', { 'http.request.method': 'GET', 'url.path': '/api/v1/leads?token=t1', 'http.route': '/api/v1/leads' }],
    ['@opentelemetry/instrumentation-undici', { 'http.request.method': 'GET', 'url.full': 'http://data-service/a?api_key=t2', 'url.query': 'password=t3', 'server.port': 80 }],
    ['@opentelemetry/instrumentation-http', { 'http.url': 'http://h/b?access_token=t4', 'http.target': '/b?secret=t5', 'url.original': '/c?token=t6' }],
    ['@opentelemetry/instrumentation-ioredis', { 'db.system.name': 'redis', 'db.query.text': 'get k', 'url.full': 'redis://h/?password=t7' }],
    ['lead-chassis/db-pool', { 'db.system.name': 'postgresql', 'server.port': 5432, 'url.original': 'postgres://h/db?password=t8' }]
  ]
  // Twice over, in turn: the processor's reads meet every shape of attributes before the second round.
  for (let round = 0; round < 2; round++) {
    for (const [scope, attributes] of shapes) {
      const span = provider.getTracer(scope).startSpan('span', { attributes: round === 0 ? attributes : {} })
      if (round === 1) for (const [key, value] of Object.entries(attributes)) span.setAttribute(key, value)
      span.end()
    }
  }
  await provider.forceFlush()
  const exported = exporter.getFinishedSpans()
  assert.equal(exported.length, 2 * shapes.length)
  const text = JSON.stringify(exported.map((span) => span.attributes))
  for (let i = 1; i <= 8; i++) assert.ok(!text.includes(`t${i}"`) && !text.includes(`t${i}&`), `secret t${i} scrubbed: ${text}`)
  assert.equal(text.split('[REDACTED]').length - 1, 2 * 8)
  await provider.shutdown()
})

test('a value PostgreSQL rejects reaches no pg instrumentation span: neither its statement, its status nor its events', async () => {
  const { default: pg } = await import('pg')
  const { TEST_DATABASE_URL } = await import('../../test/helpers/database.js')
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    await assert.rejects(client.query('SELECT $1::int AS n', ['someone@example.com']), /invalid input syntax/)
  } finally {
    await client.end()
  }
  // SimpleSpanProcessor exports once the span has ended, asynchronously.
  for (let i = 0; i < 100 && !sdkExporter.getFinishedSpans().some((s) => s.status.code === 2); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  const query = sdkExporter.getFinishedSpans().find((s) => s.instrumentationScope.name === '@opentelemetry/instrumentation-pg' && s.status.code === 2)
  assert.ok(query, `a failed query span: ${sdkExporter.getFinishedSpans().map((s) => s.name).join(', ')}`)
  assert.equal(query.attributes['db.query.text'], 'SELECT $1::int AS n')
  assert.equal(query.status.message, 'PostgreSQL error')
  assert.match(String(query.events[0]?.attributes?.['exception.message']), /22P02/, 'the code is in the exception event')
  assert.ok(!JSON.stringify({ attributes: query.attributes, events: query.events, status: query.status }).includes('someone@example.com'))
  await sdk.shutdown()
})
