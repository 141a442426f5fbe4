import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { ROOT_CONTEXT, TraceFlags, context, trace } from '@opentelemetry/api'
import { node } from '@opentelemetry/sdk-node'
import { insideUnsampledSpan, parentBasedSampler, skipUnsampledRedisCommands } from './unsampled.js'

// The SDK's context manager, so that the active span is what the instrumentations would see.
new node.NodeTracerProvider().register()

const ids = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
const inSpan = <T>(flags: TraceFlags, fn: () => T): T => context.with(trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ ...ids, traceFlags: flags })), fn)

test('only a span of an unsampled trace makes a request unsampled; a sampled caller\'s context or no span at all does not', () => {
  assert.equal(inSpan(TraceFlags.NONE, insideUnsampledSpan), true)
  assert.equal(inSpan(TraceFlags.SAMPLED, insideUnsampledSpan), false, 'a propagated sampled context records nothing itself, yet its children are sampled')
  assert.equal(insideUnsampledSpan(), false)
})

test('the samplers that follow the parent: the parentbased_ ones and the SDK default when none is set', () => {
  assert.equal(parentBasedSampler(undefined), true)
  assert.equal(parentBasedSampler('parentbased_traceidratio'), true)
  assert.equal(parentBasedSampler('traceidratio'), false)
  assert.equal(parentBasedSampler('always_on'), false)
})

test('a Redis command of an unsampled request bypasses the ioredis instrumentation; one outside any request does not', () => {
  const traced: string[] = []
  const sent: string[] = []
  // The shape of the ioredis instrumentation: the method that wraps Redis.prototype.sendCommand.
  const instrumentation = {
    _traceSendCommand (original: (this: unknown, ...args: unknown[]) => unknown) {
      return function (this: unknown, ...args: unknown[]) { traced.push(String(args[0])); return original.apply(this, args) }
    }
  }
  skipUnsampledRedisCommands(instrumentation)
  const sendCommand = instrumentation._traceSendCommand(function (this: unknown, command: unknown) { sent.push(String(command)); return this })
  const client = {}
  assert.equal(inSpan(TraceFlags.NONE, () => sendCommand.call(client, 'get')), client, 'the command still runs, on its client')
  assert.deepEqual(traced, [])
  inSpan(TraceFlags.SAMPLED, () => sendCommand.call(client, 'set'))
  sendCommand.call(client, 'del')
  assert.deepEqual(traced, ['set', 'del'])
  assert.deepEqual(sent, ['get', 'set', 'del'])
})

test('an ioredis instrumentation without the method it wraps is not silently left untouched: the process warns at start, and keeps running', async () => {
  const warning = once(process, 'warning') as Promise<[Error]>
  assert.doesNotThrow(() => skipUnsampledRedisCommands({}))
  const [w] = await warning
  assert.match(w.message, /_traceSendCommand/)
})
