import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createNoopMeter, type Meter, type MeterProvider } from '@opentelemetry/api'
import { node } from '@opentelemetry/sdk-node'
import { sdkMetricsEnabled, skipSpanCountMetrics } from './span-count-metrics.js'

/** A meter provider that notes every count the SDK's tracers add. */
function countingMeterProvider (): { provider: MeterProvider, added: number[] } {
  const added: number[] = []
  const meter = createNoopMeter()
  const counter = { add: (value: number) => { added.push(value) } }
  const counting: Meter = { ...meter, createCounter: () => counter as never, createUpDownCounter: () => counter as never }
  return { provider: { getMeter: () => counting }, added }
}

test('a span of a tracer whose span counts go to no exported meter counts itself into none, for tracers taken before and after', () => {
  const { provider: meterProvider, added } = countingMeterProvider()
  const provider = new node.NodeTracerProvider({ meterProvider })
  const before = provider.getTracer('before')
  skipSpanCountMetrics(provider)
  before.startSpan('a').end()
  provider.getTracer('after').startSpan('b').end()
  assert.deepEqual(added, [])
})

test('without the cut the SDK counts every span it starts and ends (what the cut removes)', () => {
  const { provider: meterProvider, added } = countingMeterProvider()
  new node.NodeTracerProvider({ meterProvider }).getTracer('t').startSpan('a').end()
  assert.deepEqual(added, [1, 1, -1])
})

test('the SDK\'s span counts are skipped only when OTEL_NODE_EXPERIMENTAL_SDK_METRICS does not ask for them', () => {
  assert.equal(sdkMetricsEnabled(undefined), false)
  assert.equal(sdkMetricsEnabled('false'), false)
  assert.equal(sdkMetricsEnabled(' TRUE '), true)
})

test('a tracer provider of the SDK that keeps its tracers elsewhere is met with a warning, and its spans keep working', async () => {
  const warning = once(process, 'warning') as Promise<[Error]>
  const provider = { getTracer: () => ({}), forceFlush: async () => {} }
  assert.doesNotThrow(() => skipSpanCountMetrics(provider as never))
  const [w] = await warning
  assert.match(w.message, /span counts/)
})
