import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api'
import { node } from '@opentelemetry/sdk-node'
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { createConnectionPool, type ConnectionPool } from '../db-pool/index.js'
import { TEST_DATABASE_URL, uniqueName } from '../../test/helpers/database.js'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'
import { QUERY_SPANS_SCOPE, traceQueries } from './query-spans.js'

const exporter = new InMemorySpanExporter()
// NodeTracerProvider brings the AsyncLocalStorage context manager, so the caller's span survives the pool's awaits.
const provider = new node.NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
provider.register()
const tracer = provider.getTracer('query-spans-test')
let pool: ConnectionPool
let stop: () => void

before(async () => {
  await loadQueryParser()
  stop = traceQueries(provider.getTracer(QUERY_SPANS_SCOPE))
  pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, name: uniqueName('query_spans'), min: 0, max: 2, healthCheckInterval: 0 })
  await pool.start()
  exporter.reset()
})

after(async () => {
  stop()
  await pool.close()
  await provider.shutdown()
})

const target = new URL(TEST_DATABASE_URL)
const database = target.pathname.slice(1)
const dbSpans = () => exporter.getFinishedSpans().filter((s) => s.instrumentationScope.name === QUERY_SPANS_SCOPE)

test('a query through the pool makes one CLIENT span under the caller\'s span, with the stable attributes and the fingerprint', async () => {
  exporter.reset()
  const parent = tracer.startSpan('caller')
  const text = "SELECT $1::int + 1 AS n, 'it''s' AS s"
  await context.with(trace.setSpan(context.active(), parent), () => pool.query(text, [41]))
  parent.end()
  const spans = dbSpans()
  assert.equal(spans.length, 1, 'one span per query')
  const [span] = spans
  assert.ok(span)
  assert.equal(span.kind, SpanKind.CLIENT)
  assert.equal(span.parentSpanContext?.spanId, parent.spanContext().spanId)
  assert.equal(span.spanContext().traceId, parent.spanContext().traceId)
  assert.equal(span.name, `SELECT ${database}`)
  assert.deepEqual(span.attributes, {
    'db.system.name': 'postgresql',
    'db.namespace': database,
    'db.operation.name': 'SELECT',
    'db.query.text': text,
    'db.query.fingerprint': normalizeQuery(text).fingerprint,
    'server.address': target.hostname,
    'server.port': Number(target.port || 5432)
  })
  assert.equal(span.status.code, SpanStatusCode.UNSET)
  assert.doesNotMatch(JSON.stringify(span.attributes), /41/, 'parameter values stay out of the span')
})

test('a failing query ends its span with status ERROR, the SQLSTATE as error.type and db.response.status_code', async () => {
  exporter.reset()
  await assert.rejects(pool.query('SELECT * FROM no_such_table_for_spans'), { sqlState: '42P01' })
  const [span] = dbSpans()
  assert.ok(span)
  assert.equal(span.status.code, SpanStatusCode.ERROR)
  assert.equal(span.attributes['error.type'], '42P01')
  assert.equal(span.attributes['db.response.status_code'], '42P01')
  assert.ok(span.endTime[0] > 0, 'the span is ended')
})

test('each statement of a transaction gets its span; unsubscribing stops them', async () => {
  exporter.reset()
  await pool.transaction((tx) => tx.query('SELECT 1'))
  assert.deepEqual(dbSpans().map((s) => s.attributes['db.operation.name']), ['BEGIN', 'SELECT', 'COMMIT'])
  stop()
  exporter.reset()
  await pool.query('SELECT 2')
  assert.deepEqual(dbSpans(), [])
  stop = traceQueries(provider.getTracer(QUERY_SPANS_SCOPE))
})

test('a query of an unsampled request builds no attributes for its span that records nothing', async () => {
  let attributesSet = 0
  const nonRecording = trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 })
  const span = Object.assign(Object.create(nonRecording) as typeof nonRecording, {
    setAttributes: () => { attributesSet++; return span },
    isRecording: () => false
  })
  const options: Array<{ attributes?: unknown }> = []
  const stopFake = traceQueries({ startSpan: (_name: string, o: { attributes?: unknown }) => { options.push(o); return span }, startActiveSpan: () => { throw new Error('not used') } } as unknown as Parameters<typeof traceQueries>[0])
  try {
    await pool.query('SELECT 3')
  } finally {
    stopFake()
  }
  assert.equal(options.length, 1, 'the span was started')
  assert.equal(options[0]?.attributes, undefined, 'no attributes given at the start')
  assert.equal(attributesSet, 0, 'nor set afterwards')
})

test('a query inside an unsampled request starts no span under a parent-based sampler, and one under any other sampler', async () => {
  const unsampled = trace.setSpan(context.active(), trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 }))
  const started = (parentBased: boolean): Promise<number> => {
    let starts = 0
    const fake = { startSpan: () => { starts++; return trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b8', traceFlags: 0 }) }, startActiveSpan: () => { throw new Error('not used') } } as unknown as Parameters<typeof traceQueries>[0]
    const stopFake = traceQueries(fake, parentBased)
    return context.with(unsampled, () => pool.query('SELECT 4')).then(() => starts, () => starts).finally(stopFake)
  }
  assert.equal(await started(true), 0, 'parent-based: the child of a span that records nothing is never started')
  assert.equal(await started(false), 1, 'a sampler that is not parent-based decides for the child itself')
})
