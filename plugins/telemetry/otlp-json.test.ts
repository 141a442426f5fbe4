import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { SamplingDecision, SpanKind, SpanStatusCode, TraceFlags, context, trace } from '@opentelemetry/api'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resources, tracing } from '@opentelemetry/sdk-node'
import { startOtlpReceiver, waitForSpans } from '../../test/helpers/otlp.js'
import { WrittenSpan, otlpJsonTraceSerializer } from './otlp-json.js'
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

test('spans written as they end are sent byte for byte as the SDK\'s serializer would send them, alone or among spans written at export', () => {
  const spans = varietyOfSpans()
  const sdk = Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? [])
  const written = spans.map((span) => new WrittenSpan(span)) as unknown as tracing.ReadableSpan[]
  assert.equal(Buffer.from(otlpJsonTraceSerializer.serializeRequest(written) ?? []).toString(), sdk.toString())
  assert.ok(Buffer.from(otlpJsonTraceSerializer.serializeRequest(written) ?? []).equals(sdk), 'the same bytes, UTF-8 included')
  const mixed = spans.map((span, i) => i % 2 === 0 ? span : written[i] as tracing.ReadableSpan)
  assert.ok(Buffer.from(otlpJsonTraceSerializer.serializeRequest(mixed) ?? []).equals(sdk), 'every other span written at export')
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

/** The exporting processors the environment asks for, sending OTLP/HTTP JSON to `url` only when shut down. */
function exportingAtShutdown (t: { after: (fn: () => void) => void }, url: string): tracing.SpanProcessor[] {
  const saved = { ...process.env }
  t.after(() => { process.env = saved })
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '60000' })
  delete process.env.OTEL_TRACES_EXPORTER
  delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL
  return exportingSpanProcessors()
}

test('a sampled span waits for its export already written: the SDK\'s span object is garbage once it ends, not kept until its batch is sent', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const otlp = await startOtlpReceiver(t)
  const provider = new tracing.BasicTracerProvider({ spanProcessors: exportingAtShutdown(t, otlp.url) })
  const tracer = provider.getTracer('lead-chassis/db-pool')
  const ended = ((): WeakRef<object> => {
    const span = tracer.startSpan('SELECT leads', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'server.port': 5432 } })
    span.end()
    return new WeakRef(span)
  })()
  // A weak reference holds its object until the end of the turn that made it.
  await sleep(1)
  gc()
  assert.equal(otlp.received.length, 0, 'its batch is not sent yet')
  assert.equal(ended.deref(), undefined, 'the ended span is no longer held')
  await provider.shutdown()
  await waitForSpans(otlp.received, (spans) => spans.length === 1)
  assert.equal(otlp.received[0]?.span.name, 'SELECT leads')
  assert.deepEqual(otlp.received[0]?.span.attributes, [{ key: 'db.system.name', value: { stringValue: 'postgresql' } }, { key: 'server.port', value: { intValue: 5432 } }])
})

test('spans written as they end, of a resource whose attributes settle later, are sent with its settled attributes; spans recorded but not sampled are not sent', async (t) => {
  const otlp = await startOtlpReceiver(t)
  let settle: (pod: string) => void = () => {}
  const pod = new Promise<string>((resolve) => { settle = resolve })
  const resource = resources.resourceFromAttributes({ 'service.name': 'api', 'k8s.pod.name': pod })
  assert.equal(resource.asyncAttributesPending, true)
  // Every other span is recorded for the service's own processors but not sampled: no exporter may send it.
  let decided = 0
  const sampler = { shouldSample: () => ({ decision: decided++ % 2 === 0 ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.RECORD }), toString: () => 'every other sampled' }
  const provider = new tracing.BasicTracerProvider({ resource, sampler, spanProcessors: exportingAtShutdown(t, otlp.url) })
  const tracer = provider.getTracer('lead-chassis/fastify')
  const sampled = 20
  for (let i = 0; i < 2 * sampled; i++) {
    const span = tracer.startSpan(`request ${i}`)
    assert.ok(span.isRecording())
    span.end()
  }
  settle('api-7f9c')
  await provider.shutdown()
  await waitForSpans(otlp.received, (spans) => spans.length === sampled)
  assert.equal(otlp.received.length, sampled)
  assert.ok(otlp.received.every((s) => s.resource['k8s.pod.name'] === 'api-7f9c'), 'the settled attribute on every span')
  assert.deepEqual(otlp.received.map((s) => s.span.name).sort(), Array.from({ length: sampled }, (_v, i) => `request ${2 * i}`).sort())
})

test('a span that cannot be written as it ends does not fail the work that ends it: it is left to its export', async (t) => {
  const otlp = await startOtlpReceiver(t)
  const processors = exportingAtShutdown(t, otlp.url)
  const provider = new tracing.BasicTracerProvider({ spanProcessors: processors })
  const span = provider.getTracer('lead-chassis/fastify').startSpan('GET /api/v1/leads/:id')
  span.end()
  // The same span, whose links cannot be read: the writer throws on it.
  const unwritable = Object.create(span, { links: { get: () => { throw new Error('unreadable') } } }) as tracing.ReadableSpan
  for (const processor of processors) assert.doesNotThrow(() => { processor.onEnd(unwritable) })
  // Its batch then fails to be written at export, where the batch processor reports it, not the request.
  await assert.rejects(provider.shutdown(), /unreadable/)
})
