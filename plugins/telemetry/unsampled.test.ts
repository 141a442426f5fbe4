import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ROOT_CONTEXT, TraceFlags, context, trace } from '@opentelemetry/api'
import { node } from '@opentelemetry/sdk-node'
import { insideUnsampledSpan, parentBasedSampler } from './unsampled.js'

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
  // What the SDK does with a blank or unknown name: its default, parentbased_always_on.
  for (const unknown of ['', ' ', 'traceidratio ', 'AlwaysOn', 'xray']) assert.equal(parentBasedSampler(unknown), true, JSON.stringify(unknown))
})
