import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SpanKind, SpanStatusCode, TraceFlags, context, trace } from '@opentelemetry/api'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resources, tracing } from '@opentelemetry/sdk-node'
import { startOtlpReceiver, waitForSpans } from '../../test/helpers/otlp.js'
import { otlpJsonTraceSerializer } from './otlp-json.js'
import { exportingSpanProcessors } from './span-processors.js'

/** Ended spans of every shape the SDK can hand an exporter: two resources, scopes with and without version, schema URL or attributes. */
function varietyOfSpans (): tracing.ReadableSpan[] {
  const exporter = new tracing.InMemorySpanExporter()
  const providers = [
    new tracing.BasicTracerProvider({ resource: resources.resourceFromAttributes({ 'service.name': 'api', 'process.pid': 42, 'host.arch': 'amd64' }), spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] }),
    new tracing.BasicTracerProvider({ resource: resources.resourceFromAttributes({ 'service.name': 'überdienst' }, { schemaUrl: 'https://opentelemetry.io/schemas/1.26.0' }), spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] })
  ]
  for (const provider of providers) {
    const server = provider.getTracer('lead-chassis/fastify', '1.0.0')
    const bare = provider.getTracer('bare')
    const described = provider.getTracer('described', '2.0.0', { schemaUrl: 'https://example.com/schema', attributes: { team: 'leads', 'ü': 1 } } as never)
    const remote = trace.setSpanContext(context.active(), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new (class { serialize (): string { return 'vendor=a,other=b' } get (): undefined { return undefined } set (): never { throw new Error('unused') } unset (): never { throw new Error('unused') } })() })
    const root = server.startSpan('GET /api/v1/leads/:id', { kind: SpanKind.SERVER }, remote)
    root.setAttributes({
      'http.request.method': 'GET',
      'url.path': '/api/v1/leads/0b1c2d3e?q="quoted"\\back\nline\ttab',
      'http.route': '/api/v1/leads/:id',
      'http.response.status_code': 500,
      ratio: 0.25,
      huge: 1e21,
      negative: -7,
      'not a number': Number.NaN,
      flag: false,
      café: 'crème brûlée ✓ 𝄞',
      lone: 'half \ud800 a pair',
      control: 'bell \u0007 null \u0000 del \u007f',
      strings: ['a', 'b"c'],
      numbers: [1, 2.5, -3],
      mixed: ['x', 1, true, null] as never,
      empty: []
    })
    root.addEvent('cache miss', { key: 'lead:1', 'ü': 'ö' })
    root.addEvent('bare event')
    root.recordException(Object.assign(new Error('the store is down: "redis"'), { code: 'ECONNREFUSED' }))
    root.addLink({ context: { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: TraceFlags.NONE }, attributes: { why: 'batch' } })
    root.addLink({ context: { traceId: 'c'.repeat(32), spanId: 'd'.repeat(16), traceFlags: TraceFlags.SAMPLED, isRemote: true } })
    root.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream said «no»' })
    const child = bare.startSpan('SELECT leads', { kind: SpanKind.CLIENT, attributes: { 'db.query.text': 'SELECT "id", to_char(created_at, \'YYYY\') AS "cursorValue" FROM leads WHERE email = $1', 'server.port': 5432 } }, trace.setSpan(context.active(), root))
    child.end()
    described.startSpan('internal', { startTime: [1, 5] }).end([2, 999_999_999])
    described.startSpan('zero').end()
    root.end()
  }
  return exporter.getFinishedSpans()
}

test('the chassis\'s OTLP JSON writer sends byte for byte what the SDK\'s serializer would, for every kind of span field and value', () => {
  const spans = varietyOfSpans()
  const sdk = Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? [])
  assert.equal(Buffer.from(otlpJsonTraceSerializer.serializeRequest(spans) ?? []).toString(), sdk.toString())
  assert.ok(Buffer.from(otlpJsonTraceSerializer.serializeRequest(spans) ?? []).equals(sdk), 'the same bytes, UTF-8 included')
  // Each span alone and in other groupings: the writer keeps no state from one request to the next.
  for (const span of spans) {
    assert.ok(Buffer.from(otlpJsonTraceSerializer.serializeRequest([span]) ?? []).equals(Buffer.from(JsonTraceSerializer.serializeRequest([span]) ?? [])), span.name)
  }
})

test('spans of distinct scope objects with the same name, version and schema URL are written under one scope, as the SDK writes them', () => {
  // Two providers on one resource: each has its own tracer, so its own scope object, for the same scope.
  const exporter = new tracing.InMemorySpanExporter()
  const resource = resources.resourceFromAttributes({ 'service.name': 'api' })
  const tracers = [0, 1].map(() => new tracing.BasicTracerProvider({ resource, spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] }).getTracer('lead-chassis/db-pool', '1.0.0'))
  const other = new tracing.BasicTracerProvider({ resource, spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] }).getTracer('lead-chassis/fastify')
  for (let i = 0; i < 3; i++) {
    tracers[i % 2]?.startSpan(`query ${i}`).end()
    other.startSpan(`request ${i}`).end()
  }
  const spans = exporter.getFinishedSpans()
  assert.notEqual(spans[0]?.instrumentationScope, spans[2]?.instrumentationScope, 'two scope objects')
  const body = Buffer.from(otlpJsonTraceSerializer.serializeRequest(spans) ?? [])
  assert.ok(body.equals(Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? [])))
  const written = JSON.parse(body.toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ scope: { name: string }, spans: Array<{ name: string }> }> }> }
  assert.deepEqual(written.resourceSpans[0]?.scopeSpans.map((s) => [s.scope.name, s.spans.map((span) => span.name)]), [
    ['lead-chassis/db-pool', ['query 0', 'query 1', 'query 2']],
    ['lead-chassis/fastify', ['request 0', 'request 1', 'request 2']]
  ])
})

test('a non-ASCII attribute key is sent as UTF-8 every time, not only the first time the writer sees it', () => {
  const exporter = new tracing.InMemorySpanExporter()
  const provider = new tracing.BasicTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] })
  provider.getTracer('t').startSpan('a', { attributes: { 'größe': 'plain value' } }).end()
  const spans = exporter.getFinishedSpans()
  for (let i = 0; i < 3; i++) {
    const body = Buffer.from(otlpJsonTraceSerializer.serializeRequest(spans) ?? [])
    assert.ok(body.equals(Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? [])), `request ${i + 1}`)
    assert.equal((JSON.parse(body.toString('utf8')) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ attributes: Array<{ key: string }> }> }> }> }).resourceSpans[0]?.scopeSpans[0]?.spans[0]?.attributes[0]?.key, 'größe')
  }
})

test('the OTLP/HTTP JSON exporter the environment asks for writes with the chassis\'s writer, and exports the spans still queued at shutdown', async (t) => {
  const otlp = await startOtlpReceiver(t)
  const saved = { ...process.env }
  t.after(() => { process.env = saved })
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '60000' })
  delete process.env.OTEL_TRACES_EXPORTER
  delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL
  const serialize = otlpJsonTraceSerializer.serializeRequest
  let written = 0
  otlpJsonTraceSerializer.serializeRequest = (spans) => { written += spans.length; return serialize(spans) }
  t.after(() => { otlpJsonTraceSerializer.serializeRequest = serialize })
  const provider = new tracing.BasicTracerProvider({ spanProcessors: exportingSpanProcessors() })
  const span = provider.getTracer('lead-chassis/fastify').startSpan('GET /api/v1/leads/:id', { kind: SpanKind.SERVER, attributes: { 'url.path': '/api/v1/leads/x?api_key=lck_secret', 'über': 'grüße' } })
  span.end()
  // The batch would wait a minute: only the shutdown sends it.
  await provider.shutdown()
  await waitForSpans(otlp.received, (spans) => spans.length === 1)
  assert.equal(written, 1, 'written by the chassis\'s writer')
  assert.deepEqual(otlp.contentTypes, ['application/json'])
  const attributes = Object.fromEntries((otlp.received[0]?.span.attributes ?? []).map((a) => [a.key, a.value.stringValue]))
  assert.deepEqual(attributes, { 'url.path': '/api/v1/leads/x?api_key=[REDACTED]', 'über': 'grüße' }, 'scrubbed first, and UTF-8 arrives as sent')
})
