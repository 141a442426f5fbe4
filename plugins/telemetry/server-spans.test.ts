import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SpanStatusCode, context, trace, type Span, type SpanContext, type Tracer, type TracerProvider } from '@opentelemetry/api'
import { node, tracing } from '@opentelemetry/sdk-node'
import Fastify, { type FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { SERVER_SPANS_SCOPE, ServerSpanInstrumentation } from './server-spans.js'
import { buildService, chassisConfigFragment, composeSchema, kTrustsCallerTrace, loadConfig, type ChassisConfig } from '../chassis/index.js'

// The SDK's provider and context manager, with the sampler the services ship (parent-based, 10% of new traces).
const exporter = new tracing.InMemorySpanExporter()
const provider = new node.NodeTracerProvider({
  sampler: new tracing.ParentBasedSampler({ root: new tracing.TraceIdRatioBasedSampler(0.1) }),
  spanProcessors: [new tracing.SimpleSpanProcessor(exporter)]
})
provider.register()
// Every span the instrumentation starts, sampled or not, goes through this tracer.
let started = 0
const counting: TracerProvider = {
  getTracer: (name, version, options): Tracer => {
    const tracer = provider.getTracer(name, version, options)
    return {
      startSpan: (...args: Parameters<Tracer['startSpan']>): Span => { started++; return tracer.startSpan(...args) },
      startActiveSpan: tracer.startActiveSpan.bind(tracer) as Tracer['startActiveSpan']
    }
  }
}
const instrumentation = new ServerSpanInstrumentation()
instrumentation.setTracerProvider(counting)

const app = Fastify()
let seen: SpanContext | undefined
app.get('/items/:id', async () => {
  seen = trace.getSpanContext(context.active())
  return { ok: true }
})
app.get('/leads', { schema: { querystring: { type: 'object', properties: { status: { type: 'string', enum: ['new', 'lost'] } } } } }, async () => ({ ok: true }))
app.get('/leads/:id', { schema: { params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } } } } }, async () => ({ ok: true }))
app.get('/broken', async () => { throw new Error('the store is down') })
app.get('/refused', async () => { throw Object.assign(new Error('body/score must be <= 100'), { statusCode: 400 }) })
let entered: () => void = () => {}
let release: () => void = () => {}
app.get('/slow', async () => {
  entered()
  await new Promise<void>((resolve) => { release = resolve })
  return { ok: true }
})

const caller = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
const traceparent = (flags: string): string => `00-${caller.traceId}-${caller.spanId}-${flags}`

test('a request whose caller\'s trace is unsampled starts no span object, and runs in the caller\'s trace context', async () => {
  started = 0
  exporter.reset()
  const res = await app.inject({ url: '/items/7', headers: { traceparent: traceparent('00') } })
  assert.equal(res.statusCode, 200)
  assert.equal(started, 0, 'no span started, not even one that records nothing')
  assert.equal(seen?.traceId, caller.traceId, 'log lines and outgoing calls carry the caller\'s trace')
  assert.equal(seen?.traceFlags, 0, 'and pass on that it is not sampled')
  assert.deepEqual(exporter.getFinishedSpans(), [])
})

test('a request whose caller\'s trace is sampled gets one SERVER span named after its route, under the caller\'s span', async () => {
  exporter.reset()
  const res = await app.inject({ url: '/items/7?email=a@b.co', headers: { traceparent: traceparent('01') } })
  assert.equal(res.statusCode, 200)
  const [span, ...others] = exporter.getFinishedSpans()
  assert.ok(span, 'the server span was exported')
  assert.deepEqual(others, [])
  assert.equal(span.name, 'GET /items/:id')
  assert.equal(span.instrumentationScope.name, SERVER_SPANS_SCOPE)
  assert.equal(span.spanContext().traceId, caller.traceId)
  assert.equal(span.parentSpanContext?.spanId, caller.spanId)
  assert.equal(seen?.spanId, span.spanContext().spanId, 'the handler runs in the server span\'s context')
  // `/items/:id` declares no shape for its id, nor any query parameter: neither value is shown.
  assert.deepEqual(span.attributes, { 'http.request.method': 'GET', 'url.path': '/items/[REDACTED]?[REDACTED]=[REDACTED]', 'http.route': '/items/:id', 'http.response.status_code': 200 })
})

test('a phone or name in a URL reaches no span attribute', async () => {
  exporter.reset()
  const id = '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d'
  const sent = ['/leads/AnnLee', '/nowhere/5551234567/Ann%20Lee', '/leads?name=Ann+Lee&phone=%2B15551234567&status=Lee&5551234567&AnnLee=1', `/leads/${id}`, '/leads?status=new']
  for (const url of sent) await app.inject({ url, headers: { traceparent: traceparent('01') } })
  const spans = exporter.getFinishedSpans()
  assert.equal(spans.length, sent.length)
  const text = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })))
  for (const value of ['Ann', 'Lee', '5551234567']) assert.ok(!text.includes(value), `${value} reached a span: ${text}`)
  assert.deepEqual(spans.map((s) => s.attributes['url.path']), [
    '/leads/[REDACTED]',
    '/[REDACTED]/[REDACTED]/[REDACTED]',
    // No route declares `name`, `phone` nor `AnnLee`: a name sent as a parameter's name is hidden like its value.
    '/leads?[REDACTED]=[REDACTED]&[REDACTED]=[REDACTED]&status=[REDACTED]&[REDACTED]&[REDACTED]=[REDACTED]',
    `/leads/${id}`,
    '/leads?status=new'
  ], 'what the route declares is still shown as sent')
})

test('a failing request\'s server span has status ERROR, the error\'s message and an exception event', async () => {
  exporter.reset()
  const res = await app.inject({ url: '/broken', headers: { traceparent: traceparent('01') } })
  assert.equal(res.statusCode, 500)
  const [span] = exporter.getFinishedSpans()
  assert.equal(span?.status.code, SpanStatusCode.ERROR)
  assert.equal(span?.status.message, 'the store is down')
  assert.equal(span?.attributes['http.response.status_code'], 500)
  assert.ok(span?.events.some((e) => e.name === 'exception'))
})

test('a client error (4xx) leaves the server span\'s status unset, as the HTTP conventions ask, and keeps its exception event', async () => {
  exporter.reset()
  const res = await app.inject({ url: '/refused', headers: { traceparent: traceparent('01') } })
  assert.equal(res.statusCode, 400)
  const [span] = exporter.getFinishedSpans()
  assert.equal(span?.status.code, SpanStatusCode.UNSET, 'a caller\'s mistake is not the server\'s error')
  assert.equal(span?.attributes['http.response.status_code'], 400)
  assert.ok(span?.events.some((e) => e.name === 'exception'))
})

test('a request with no caller gets a span that the root sampler decides on: an unsampled one records nothing', async () => {
  exporter.reset()
  started = 0
  for (let i = 0; i < 50; i++) assert.equal((await app.inject({ url: '/items/7' })).statusCode, 200)
  assert.equal(started, 50, 'a new trace needs its ids and the sampler\'s verdict')
  assert.ok(exporter.getFinishedSpans().length < 25, `about 10% exported: ${exporter.getFinishedSpans().length} of 50`)
})

test('a request whose caller hangs up before the answer still ends its server span, once', async () => {
  exporter.reset()
  await app.listen({ port: 0, host: '127.0.0.1' })
  try {
    const { port } = app.server.address() as AddressInfo
    const inHandler = new Promise<void>((resolve) => { entered = resolve })
    const req = httpRequest({ host: '127.0.0.1', port, path: '/slow', headers: { traceparent: traceparent('01') } })
    req.on('error', () => {})
    req.end()
    await inHandler
    req.destroy()
    for (let i = 0; i < 100 && exporter.getFinishedSpans().length === 0; i++) await sleep(10)
    const [span, ...others] = exporter.getFinishedSpans()
    assert.equal(span?.name, 'GET /slow', 'the aborted request\'s span was ended and exported')
    assert.equal(span?.attributes['http.request.aborted'], true)
    assert.deepEqual(others, [])
    // The handler answers after the caller left: no second end.
    release()
    await sleep(50)
    assert.equal(exporter.getFinishedSpans().length, 1)
  } finally {
    await app.close()
  }
})

test('a URL the router refuses gets its server span, as a 404 does, with neither its URL nor its key', async (t) => {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  const service = await buildService({ name: 'spans-test', config, routes: [(a) => { a.get('/own/:id', async () => ({ ok: true })) }] })
  t.after(() => service.close())
  exporter.reset()
  const res = await service.inject({ url: '/own/%zz?api_key=lck_secret', headers: { traceparent: traceparent('01') } })
  assert.equal(res.statusCode, 400)
  const [span, ...others] = exporter.getFinishedSpans()
  assert.deepEqual(others, [])
  assert.equal(span?.name, 'GET unmatched')
  assert.equal(span?.spanContext().traceId, caller.traceId)
  assert.equal(span?.attributes['http.response.status_code'], 400)
  assert.equal(span?.attributes['url.path'], '/.refused-url')
  assert.ok(!JSON.stringify(span?.attributes).includes('%zz') && !JSON.stringify(span?.attributes).includes('lck_secret'))
})

test('a caller-trust rule a plugin declares inside an encapsulated scope governs that scope\'s routes: a caller it does not trust starts a trace of its own there', async (t) => {
  const scoped = Fastify()
  t.after(() => scoped.close())
  let inScope: SpanContext | undefined
  await scoped.register(async (scope) => {
    // What `./api-keys` does, registered inside a scope: its decoration is that scope's, not the root's.
    await scope.register(fp(async (inner) => { inner.decorate(kTrustsCallerTrace, (request: FastifyRequest) => request.headers['x-service-key'] === 'the-service') }))
    scope.get('/guarded', async () => {
      inScope = trace.getSpanContext(context.active())
      return { ok: true }
    })
  })
  assert.equal((await scoped.inject({ url: '/guarded', headers: { traceparent: traceparent('01') } })).statusCode, 200)
  // Before, the rule was read from the root, which had none, so every caller's context was continued.
  assert.notEqual(inScope?.traceId, caller.traceId, 'a caller the scope does not trust starts a trace of its own')
  assert.equal((await scoped.inject({ url: '/guarded', headers: { traceparent: traceparent('01'), 'x-service-key': 'the-service' } })).statusCode, 200)
  assert.equal(inScope?.traceId, caller.traceId, 'a trusted caller\'s trace is continued')
})
