import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, context, trace } from '@opentelemetry/api'
import { node, tracing } from '@opentelemetry/sdk-node'
import { traceRedisCommands } from './redis-spans.js'

const exporter = new tracing.InMemorySpanExporter()
const provider = new node.NodeTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] })
// The SDK's context manager, so that the active span is what the instrumentation would see.
provider.register()
const tracer = provider.getTracer('@opentelemetry/instrumentation-ioredis')

const ids = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
const inSpan = <T>(flags: TraceFlags, fn: () => T): T => context.with(trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ ...ids, traceFlags: flags })), fn)
const lead = JSON.stringify({ firstName: 'Ann', email: 'ann@example.com', phone: '+1 555 010 0001' })

interface FakeCommand { name: string, args: unknown[], resolve: (v: unknown) => void, reject: (e: Error) => void, inTransaction?: boolean, pipelineIndex?: number }
/** The ioredis instrumentation's shape (its tracer and the method that wraps Redis.prototype.sendCommand), around a client that answers at once. */
function wrappedSendCommand (parentBased: boolean, scopeTracer = tracer): { send: (command: FakeCommand) => unknown, sent: string[], client: object } {
  const sent: string[] = []
  const instrumentation = {
    tracer: scopeTracer,
    _traceSendCommand (_original: (this: unknown, command: FakeCommand) => unknown) {
      return function (this: unknown, command: FakeCommand) { throw new Error(`the instrumentation's own wrapper ran for ${command.name}`) }
    }
  }
  traceRedisCommands(instrumentation, parentBased)
  const client = { options: { host: '127.0.0.1', port: 6379 } }
  const sendCommand = instrumentation._traceSendCommand(function (this: unknown, command: FakeCommand) { sent.push(command.name); return this })
  return { send: (command) => sendCommand.call(client as never, command), sent, client }
}
const command = (name: string, args: unknown[], outcome: { error?: Error, pipelineIndex?: number } = {}): FakeCommand => {
  const c: FakeCommand = { name, args, resolve: () => {}, reject: () => {}, ...(outcome.pipelineIndex === undefined ? {} : { pipelineIndex: outcome.pipelineIndex }) }
  // The reply arrives after the command is written (ioredis calls resolve or reject then).
  queueMicrotask(() => { if (outcome.error) c.reject(outcome.error); else c.resolve('OK') })
  return c
}

test('a Redis command of a sampled request is a CLIENT span named after it, with the command and its keys, never a value', async () => {
  exporter.reset()
  const { send, sent, client } = wrappedSendCommand(true)
  assert.equal(inSpan(TraceFlags.SAMPLED, () => send(command('evalsha', ['2feb3ab13b35e87dcde99884e8124cf2894e574c', 1, 'c:lead:1', lead]))), client, 'the command runs on its client')
  inSpan(TraceFlags.SAMPLED, () => send(command('set', ['c:lead:2', lead], { pipelineIndex: 0 })))
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(sent, ['evalsha', 'set'])
  const spans = exporter.getFinishedSpans()
  assert.deepEqual(spans.map((s) => s.name), ['evalsha', 'set'])
  const [evalsha, set] = spans
  assert.equal(evalsha?.kind, SpanKind.CLIENT)
  assert.equal(evalsha?.parentSpanContext?.spanId, ids.spanId)
  assert.deepEqual(evalsha?.attributes, { 'db.system.name': 'redis', 'db.operation.name': 'evalsha', 'db.query.text': 'evalsha c:lead:1', 'server.address': '127.0.0.1', 'server.port': 6379 })
  assert.equal(set?.attributes['db.operation.name'], 'PIPELINE set')
  assert.equal(set?.attributes['db.query.text'], 'set c:lead:2')
  assert.ok(!JSON.stringify(spans.map((s) => s.attributes)).includes('ann@example.com'))
})

test('a Redis command that fails ends its span with the error', async () => {
  exporter.reset()
  const { send } = wrappedSendCommand(true)
  inSpan(TraceFlags.SAMPLED, () => send(command('get', ['k'], { error: new Error('Connection is closed.') })))
  await new Promise((resolve) => setImmediate(resolve))
  const [span] = exporter.getFinishedSpans()
  assert.deepEqual(span?.status, { code: SpanStatusCode.ERROR, message: 'Connection is closed.' })
  assert.equal(span?.events[0]?.name, 'exception')
})

test('a Redis command of an unsampled request starts no span under a parent-based sampler, nor one outside any request', async () => {
  exporter.reset()
  const { send, sent } = wrappedSendCommand(true)
  inSpan(TraceFlags.NONE, () => send(command('get', ['k'])))
  send(command('ping', []))
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(sent, ['get', 'ping'], 'the commands still run')
  assert.deepEqual(exporter.getFinishedSpans(), [])
})

test('under a sampler that is not parent-based a command of an unsampled request is left to the sampler', async () => {
  exporter.reset()
  const alwaysOn = new node.NodeTracerProvider({ sampler: new tracing.AlwaysOnSampler(), spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] })
  const { send } = wrappedSendCommand(false, alwaysOn.getTracer('@opentelemetry/instrumentation-ioredis'))
  inSpan(TraceFlags.NONE, () => send(command('get', ['k'])))
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), ['get'], 'the provider\'s sampler (always on here) kept it')
})

test('an ioredis instrumentation without the method it wraps is not silently left untouched: the process warns at start, and keeps running', async () => {
  const warning = once(process, 'warning') as Promise<[Error]>
  assert.doesNotThrow(() => traceRedisCommands({}))
  const [w] = await warning
  assert.match(w.message, /_traceSendCommand/)
})
