import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { correlateSampledLogLines } from './log-correlation.js'
import { writeJsonDirectly } from './span-processors.js'
import { traceRedisCommands } from './redis-spans.js'
import { UNPATCHED_WARNING_CODE } from './unpatched-warning.js'

async function warned (fn: () => void): Promise<Error & { code?: string }> {
  const warning = once(process, 'warning') as Promise<[Error & { code?: string }]>
  assert.doesNotThrow(fn, 'the service still starts')
  const [w] = await warning
  return w
}

test('an instrumentation version without the part the chassis replaces does not stop the service from starting: it warns and keeps its own behaviour', async () => {
  const pino = {}
  const w1 = await warned(() => correlateSampledLogLines(pino))
  assert.equal(w1.code, UNPATCHED_WARNING_CODE)
  assert.match(w1.message, /pino instrumentation/)
  assert.deepEqual(pino, {}, 'nothing was put on the instrumentation')

  const ioredis = {}
  const w2 = await warned(() => traceRedisCommands(ioredis))
  assert.equal(w2.code, UNPATCHED_WARNING_CODE)
  assert.match(w2.message, /ioredis instrumentation/)

  const saved = { protocol: process.env.OTEL_EXPORTER_OTLP_PROTOCOL, exporter: process.env.OTEL_TRACES_EXPORTER }
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/json'
  process.env.OTEL_TRACES_EXPORTER = 'otlp'
  try {
    const processor = { _exporter: { _delegate: { _serializer: { elsewhere: true } } } }
    const w3 = await warned(() => writeJsonDirectly(processor as never))
    assert.equal(w3.code, UNPATCHED_WARNING_CODE)
    assert.match(w3.message, /OTLP\/HTTP JSON exporter/)
    assert.deepEqual(processor._exporter._delegate._serializer, { elsewhere: true }, 'the SDK\'s serializer is kept')
  } finally {
    if (saved.protocol === undefined) delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL
    else process.env.OTEL_EXPORTER_OTLP_PROTOCOL = saved.protocol
    if (saved.exporter === undefined) delete process.env.OTEL_TRACES_EXPORTER
    else process.env.OTEL_TRACES_EXPORTER = saved.exporter
  }
})
