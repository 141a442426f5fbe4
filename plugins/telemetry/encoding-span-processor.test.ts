import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { SpanKind, context, diag, trace, DiagLogLevel } from '@opentelemetry/api'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { core, node, tracing } from '@opentelemetry/sdk-node'
import { startOtlpReceiver, type OtlpExport } from '../../test/helpers/otlp.js'
import { freePort } from '../../test/helpers/ports.js'
import { EncodingSpanProcessor } from './encoding-span-processor.js'
import { otlpJsonTraceSerializer } from './otlp-json.js'
import { exportingSpanProcessors } from './span-processors.js'

type After = { after: (fn: () => unknown) => void }

/** The OTLP/HTTP JSON export the environment asks for, to `url`, with the OTEL_BSP_* settings given; restored after the test. */
function exportingTo (t: After, url: string, settings: Record<string, string>): tracing.BasicTracerProvider {
  const saved = { ...process.env }
  t.after(() => { process.env = saved })
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name]
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', ...settings })
  const provider = new tracing.BasicTracerProvider({ spanProcessors: exportingSpanProcessors() })
  t.after(async () => { await provider.shutdown() })
  return provider
}

function endSpans (provider: tracing.BasicTracerProvider, names: string[]): void {
  const tracer = provider.getTracer('lead-chassis/fastify')
  for (const name of names) tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'http.route': '/api/v1/leads/:id' } }).end()
}

/** The span names of each trace export received, in order. */
function batches (exports: OtlpExport[]): string[][] {
  return exports.filter((e) => e.path === '/v1/traces').map((e) => {
    const body = JSON.parse(e.body.toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string }> }> }> }
    return body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((span) => span.name)))
  })
}

async function until (done: () => boolean, ms = 5000): Promise<void> {
  for (let waited = 0; waited < ms && !done(); waited += 20) await sleep(20)
}

test('the environment\'s OTLP/HTTP JSON export writes each span as it ends, and sends the bytes the SDK\'s batch processor would', async (t) => {
  const otlp = await startOtlpReceiver(t)
  const provider = exportingTo(t, otlp.url, { OTEL_BSP_SCHEDULE_DELAY: '60000' })
  const processors = (provider as unknown as { _activeSpanProcessor: { _spanProcessors: unknown[] } })._activeSpanProcessor._spanProcessors
  assert.ok(processors.some((p) => p instanceof EncodingSpanProcessor), 'the SDK\'s batch processor was replaced')

  // The same spans, kept as objects, give the SDK's own serializer's bytes to compare with.
  const kept = new tracing.InMemorySpanExporter()
  const sdkProvider = new tracing.BasicTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(kept)] })
  for (const p of [provider, sdkProvider]) {
    const server = p.getTracer('lead-chassis/fastify', '1.0.0')
    const db = p.getTracer('lead-chassis/db-pool')
    const root = server.startSpan('GET /api/v1/leads/:id', { kind: SpanKind.SERVER, startTime: [1_700_000_000, 5], attributes: { 'http.route': '/api/v1/leads/:id', café: 'crème ✓' } })
    db.startSpan('SELECT leads', { kind: SpanKind.CLIENT, startTime: [1_700_000_000, 6], attributes: { 'db.query.text': 'SELECT "id" FROM leads WHERE id = $1' } }, trace.setSpan(context.active(), root)).end([1_700_000_000, 7])
    root.addEvent('cache miss', { key: 'lead:1' }, [1_700_000_000, 8])
    root.end([1_700_000_000, 9])
  }
  await provider.forceFlush()
  const sent = otlp.exports.filter((e) => e.path === '/v1/traces')
  assert.equal(sent.length, 1)
  const spans = kept.getFinishedSpans()
  // Ids differ between the two providers' spans: put the received ones in their place before comparing.
  const received = JSON.parse(sent[0]?.body.toString() ?? '') as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ traceId: string, spanId: string, parentSpanId?: string }> }> }> }
  const ids = received.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))
  const expected = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? []).toString()) as typeof received
  const expectedSpans = expected.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))
  assert.equal(ids.length, 2)
  expectedSpans.forEach((span, i) => { Object.assign(span, { traceId: ids[i]?.traceId, spanId: ids[i]?.spanId, ...(span.parentSpanId === undefined ? {} : { parentSpanId: ids[i]?.parentSpanId }) }) })
  assert.deepEqual(received, expected)
  assert.ok(sent[0]?.body.includes(Buffer.from('crème ✓')), 'UTF-8 as sent')
})

test('ended spans waiting for their batch are not kept as span objects (they lived until the export and aged into the old generation)', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const otlp = await startOtlpReceiver(t)
  const provider = exportingTo(t, otlp.url, { OTEL_BSP_SCHEDULE_DELAY: '60000' })
  const sdk = new tracing.BasicTracerProvider({ spanProcessors: [new tracing.BatchSpanProcessor(new tracing.InMemorySpanExporter(), { scheduledDelayMillis: 60000 })] })
  const refs = (p: tracing.BasicTracerProvider): Array<WeakRef<object>> => {
    const out: Array<WeakRef<object>> = []
    for (let i = 0; i < 20; i++) {
      const span = p.getTracer('t').startSpan(`span ${i}`, { attributes: { i } })
      span.end()
      out.push(new WeakRef(span))
    }
    return out
  }
  const ours = refs(provider)
  const sdks = refs(sdk)
  await sleep(0)
  gc()
  assert.equal(sdks.filter((r) => r.deref() !== undefined).length, 20, 'the SDK\'s batch processor keeps them (what the test would see without the change)')
  assert.equal(ours.filter((r) => r.deref() !== undefined).length, 0, 'collected: the batch holds their text')
  await provider.forceFlush()
  assert.equal(batches(otlp.exports).flat().length, 20, 'and every one was exported')
  await sdk.shutdown()
})

test('OTEL_BSP_MAX_EXPORT_BATCH_SIZE and OTEL_BSP_SCHEDULE_DELAY: full batches go at once, the rest after the delay', async (t) => {
  const otlp = await startOtlpReceiver(t)
  const provider = exportingTo(t, otlp.url, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '3', OTEL_BSP_SCHEDULE_DELAY: '400' })
  const started = Date.now()
  endSpans(provider, ['1', '2', '3', '4', '5', '6', '7'])
  await until(() => batches(otlp.exports).length >= 2)
  assert.deepEqual(batches(otlp.exports), [['1', '2', '3'], ['4', '5', '6']], 'two full batches, without waiting for the delay')
  await until(() => batches(otlp.exports).length >= 3)
  assert.deepEqual(batches(otlp.exports)[2], ['7'])
  assert.ok(Date.now() - started >= 380, `the last one after the delay (${Date.now() - started} ms)`)

  // With the default delay (5 s), the span would still wait.
  const other = await startOtlpReceiver(t)
  const waiting = exportingTo(t, other.url, {})
  endSpans(waiting, ['late'])
  await sleep(600)
  assert.deepEqual(batches(other.exports), [], 'not sent before the default delay')
  await waiting.forceFlush()
  assert.deepEqual(batches(other.exports), [['late']], 'a flush sends it')
})

/** An OTLP receiver whose first `hang` trace exports get no answer, and that answers the rest with `status`. */
async function stalledReceiver (t: After, hang: number, status = 200): Promise<{ url: string, names: string[][], hanging: ServerResponse[] }> {
  const names: string[][] = []
  const hanging: ServerResponse[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      names.push(batches([{ path: '/v1/traces', contentType: '', body: Buffer.concat(chunks) }])[0] ?? [])
      if (names.length <= hang) hanging.push(res)
      else res.writeHead(status, { 'content-type': 'application/json' }).end('{}')
    })
  })
  const port = await freePort()
  server.listen(port, '127.0.0.1')
  t.after(() => { for (const res of hanging) res.destroy(); server.close() })
  return { url: `http://127.0.0.1:${port}`, names, hanging }
}

test('OTEL_BSP_EXPORT_TIMEOUT: an export the collector never answers holds the next batch only that long', async (t) => {
  const receiver = await stalledReceiver(t, 1)
  const provider = exportingTo(t, receiver.url, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2', OTEL_BSP_EXPORT_TIMEOUT: '300', OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_EXPORTER_OTLP_TIMEOUT: '1500' })
  endSpans(provider, ['1', '2', '3', '4'])
  await until(() => receiver.names.length >= 1)
  await sleep(150)
  assert.deepEqual(receiver.names, [['1', '2']], 'the second batch waits for the first')
  await until(() => receiver.names.length >= 2, 2000)
  assert.deepEqual(receiver.names, [['1', '2'], ['3', '4']], 'and goes once the first has had its 300 ms')
})

test('OTEL_BSP_MAX_QUEUE_SIZE: while the collector does not answer, spans past the queue are dropped and counted in one warning', async (t) => {
  const receiver = await stalledReceiver(t, 1)
  const warnings: string[] = []
  diag.setLogger({ warn: (m: string) => warnings.push(m), error: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true })
  t.after(() => { diag.disable() })
  const provider = exportingTo(t, receiver.url, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2', OTEL_BSP_MAX_QUEUE_SIZE: '4', OTEL_BSP_EXPORT_TIMEOUT: '60000', OTEL_BSP_SCHEDULE_DELAY: '60000' })
  endSpans(provider, ['1', '2'])
  await until(() => receiver.names.length >= 1)
  // Two in flight, two more fit; the next three are dropped.
  endSpans(provider, ['3', '4', '5', '6', '7'])
  assert.deepEqual(warnings, [])
  receiver.hanging.shift()?.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  await until(() => receiver.names.length >= 2)
  endSpans(provider, ['8'])
  assert.deepEqual(warnings, ['Dropped 3 spans because maxQueueSize reached'])
  await provider.forceFlush()
  assert.deepEqual(receiver.names, [['1', '2'], ['3', '4'], ['8']])
})

test('an export the collector refuses or that cannot connect loses that batch only: the next ones still go', async (t) => {
  const refusing = await stalledReceiver(t, 0, 400)
  const provider = exportingTo(t, refusing.url, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1', OTEL_BSP_SCHEDULE_DELAY: '60000' })
  endSpans(provider, ['1', '2', '3'])
  await until(() => refusing.names.length >= 3)
  assert.deepEqual(refusing.names, [['1'], ['2'], ['3']])

  const closed = exportingTo(t, `http://127.0.0.1:${await freePort()}`, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1', OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_EXPORTER_OTLP_TIMEOUT: '500' })
  endSpans(closed, ['a', 'b'])
  await assert.rejects(closed.forceFlush(), 'a flush says the export failed')
})

test('only sampled spans are exported; spans that end after shutdown are not; the export runs with tracing suppressed, in no request\'s context', async () => {
  // The AsyncLocalStorage context manager, as the services run with: without one no context is ever active.
  new node.NodeTracerProvider().register()
  const exported: number[] = []
  const contexts: Array<{ suppressed: boolean, span: boolean }> = []
  const exporter: tracing.SpanExporter = {
    export: (items, done) => {
      contexts.push({ suppressed: core.isTracingSuppressed(context.active()), span: trace.getSpan(context.active()) !== undefined })
      exported.push(items.length)
      assert.ok(otlpJsonTraceSerializer.serializeRequest(items)?.length)
      done({ code: core.ExportResultCode.SUCCESS })
    },
    shutdown: async () => {}
  }
  const processor = new EncodingSpanProcessor(exporter, { maxExportBatchSize: 2, maxQueueSize: 100, scheduledDelayMillis: 60000, exportTimeoutMillis: 1000 })
  const provider = new tracing.BasicTracerProvider({ sampler: new tracing.TraceIdRatioBasedSampler(0), spanProcessors: [processor] })
  provider.getTracer('t').startSpan('declined').end()
  const always = new tracing.BasicTracerProvider({ spanProcessors: [processor] })
  const request = always.getTracer('t').startSpan('request')
  // The second span fills the batch inside a request's context: the export it starts must not run in it.
  context.with(trace.setSpan(context.active(), request), () => {
    always.getTracer('t').startSpan('sampled').end()
    always.getTracer('t').startSpan('sampled too').end()
  })
  await until(() => exported.length === 1)
  request.end()
  await processor.forceFlush()
  assert.deepEqual(exported, [2, 1])
  assert.deepEqual(contexts, [{ suppressed: true, span: false }, { suppressed: true, span: false }], 'the exporter\'s own HTTP request makes no span, and no request\'s context waits for the export')
  await processor.shutdown()
  always.getTracer('t').startSpan('after shutdown').end()
  await processor.forceFlush()
  assert.deepEqual(exported, [2, 1])
})
