// The SDK starts before Fastify loads: Fastify and the servers are imported only dynamically, once it is up (node:test
// runs each test file in its own process).
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { register } from 'node:module'
import { once } from 'node:events'
import { ROOT_CONTEXT, SamplingDecision, trace, type Span, type Tracer } from '@opentelemetry/api'
import { NodeSDK, node, tracing } from '@opentelemetry/sdk-node'
import { PooledIdGenerator } from './id-generator.js'
import { createInstrumentations, SERVER_SPANS_SCOPE } from './instrumentations.js'
import { RootSampling } from './root-sampling.js'
import { UNPATCHED_WARNING_CODE } from './unpatched-warning.js'

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
// The shipped sampling (OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1) and the preload's ids.
const ratio = new tracing.TraceIdRatioBasedSampler(0.1)
const exporter = new tracing.InMemorySpanExporter()
const sdk = new NodeSDK({
  sampler: new tracing.ParentBasedSampler({ root: ratio }),
  idGenerator: new PooledIdGenerator(),
  spanProcessors: [new tracing.SimpleSpanProcessor(exporter)],
  instrumentations: await createInstrumentations()
})
sdk.start()
after(() => sdk.shutdown())

// Every span the server spans' SDK tracer starts, sampled or not (the instrumentation's tracer is this same object).
const serverTracer = trace.getTracer(SERVER_SPANS_SCOPE, '1.0.0')
const sdkStartSpan = serverTracer.startSpan.bind(serverTracer)
let started = 0
serverTracer.startSpan = (...args: Parameters<Tracer['startSpan']>): Span => { started++; return sdkStartSpan(...args) }

/**
 * A GET over a plain socket: the test's own client is outside the instrumentations (fetch's would start a trace and
 * send its `traceparent`), as a caller outside any trace is.
 */
async function get (port: number, path: string, headers: Record<string, string> = {}): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
  socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  let answer = ''
  for await (const chunk of socket) answer += String(chunk)
  return answer
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/

test('a request that starts a trace the sampler declines makes no SDK span, carries a valid unsampled traceparent to its outgoing calls, and one in ten is still recorded', async (t) => {
  // The service it calls, which keeps the trace headers each call brings.
  const calls: IncomingHttpHeaders[] = []
  const downstream = createServer((req, res) => { calls.push(req.headers); res.end('{}') })
  await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve))
  t.after(() => downstream.close())
  const downstreamUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}/`
  const { default: Fastify } = await import('fastify')
  const app = Fastify()
  app.get('/leads/:id', async () => {
    await (await fetch(downstreamUrl)).text()
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  const port = (app.server.address() as AddressInfo).port

  exporter.reset()
  started = 0
  const requests = 1000
  for (let i = 0; i < requests; i++) {
    // A caller's baggage alone starts no trace, and is still carried on.
    const answer = await get(port, '/leads/7', i % 10 === 3 ? { baggage: 'tenant=t1' } : {})
    assert.match(answer, /^HTTP\/1.1 200 /)
  }

  assert.equal(calls.length, requests)
  const traces = calls.map((headers) => {
    const match = TRACEPARENT.exec(String(headers.traceparent))
    assert.ok(match !== null, `a valid W3C traceparent: ${headers.traceparent}`)
    const [, traceId = '', spanId = '', flags] = match
    assert.ok(trace.isSpanContextValid({ traceId, spanId, traceFlags: 0 }), 'no all-zero id')
    return { traceId, sampled: flags === '01' }
  })
  assert.equal(new Set(traces.map((c) => c.traceId)).size, requests, 'a trace of its own per request')
  for (const c of traces) {
    const decision = ratio.shouldSample(ROOT_CONTEXT, c.traceId).decision
    assert.equal(c.sampled, decision === SamplingDecision.RECORD_AND_SAMPLED, `the sampler's own verdict on ${c.traceId}`)
  }
  const sampled = traces.filter((c) => c.sampled)
  // 100 expected; 60 and 140 are more than four standard deviations (9.5) away.
  assert.ok(sampled.length > 60 && sampled.length < 140, `about one in ten sampled: ${sampled.length} of ${requests}`)
  assert.equal(started, sampled.length, 'the SDK starts the sampled requests\' server spans, and no span for the others')
  const recorded = exporter.getFinishedSpans().filter((s) => s.instrumentationScope.name === SERVER_SPANS_SCOPE)
  assert.deepEqual(recorded.map((s) => s.spanContext().traceId).sort(), sampled.map((c) => c.traceId).sort(), 'each sampled request\'s server span is exported, in its trace')
  assert.ok(recorded.every((s) => s.name === 'GET /leads/:id' && s.parentSpanContext === undefined))
  assert.ok(calls.every((headers, i) => (i % 10 === 3) === (headers.baggage === 'tenant=t1')), 'the caller\'s baggage reaches the outgoing calls')
})

test('the SDK decides a new trace itself when its root sampler reads more than the trace id, its ids are not pooled, or its span counts are exported', (t) => {
  const tracer = (config: ConstructorParameters<typeof node.NodeTracerProvider>[0]): Tracer => new node.NodeTracerProvider(config).getTracer('root-sampling-test')
  const pooled = { idGenerator: new PooledIdGenerator() }
  assert.ok(RootSampling.of(tracer({ ...pooled, sampler: new tracing.ParentBasedSampler({ root: new tracing.TraceIdRatioBasedSampler(0.1) }) })))
  assert.ok(RootSampling.of(tracer({ ...pooled, sampler: new tracing.ParentBasedSampler({ root: new tracing.AlwaysOffSampler() }) })))
  assert.ok(RootSampling.of(tracer({ ...pooled, sampler: new tracing.TraceIdRatioBasedSampler(0.1) })))
  assert.equal(RootSampling.of(tracer({ ...pooled, sampler: new tracing.ParentBasedSampler({ root: new tracing.AlwaysOnSampler() }) })), undefined)
  assert.equal(RootSampling.of(tracer({ ...pooled, sampler: { shouldSample: () => ({ decision: SamplingDecision.NOT_RECORD }), toString: () => 'custom' } })), undefined)
  assert.equal(RootSampling.of(tracer({ sampler: new tracing.TraceIdRatioBasedSampler(0.1) })), undefined)
  assert.equal(RootSampling.of({ startSpan: () => trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '1'.repeat(16), traceFlags: 0 }), startActiveSpan: (() => undefined) as Tracer['startActiveSpan'] }), undefined)
  const metrics = process.env.OTEL_NODE_EXPERIMENTAL_SDK_METRICS
  process.env.OTEL_NODE_EXPERIMENTAL_SDK_METRICS = 'true'
  t.after(() => { if (metrics === undefined) delete process.env.OTEL_NODE_EXPERIMENTAL_SDK_METRICS; else process.env.OTEL_NODE_EXPERIMENTAL_SDK_METRICS = metrics })
  assert.equal(RootSampling.of(tracer({ ...pooled, sampler: new tracing.TraceIdRatioBasedSampler(0.1) })), undefined)
})

test('an SDK tracer that keeps its sampler or ids elsewhere (its version changed) leaves every new trace to the SDK, and the process warns', async () => {
  const moved = { instrumentationScope: { name: 'moved' }, startSpan: () => trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '1'.repeat(16), traceFlags: 0 }), startActiveSpan: (() => undefined) as Tracer['startActiveSpan'] }
  const warning = once(process, 'warning') as Promise<[Error & { code?: string }]>
  assert.equal(RootSampling.of(moved), undefined)
  const [w] = await warning
  assert.equal(w.code, UNPATCHED_WARNING_CODE)
  assert.match(w.message, /sampler or id generator/)
})
