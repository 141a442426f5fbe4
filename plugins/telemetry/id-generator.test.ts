import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isValidSpanId, isValidTraceId } from '@opentelemetry/api'
import { tracing } from '@opentelemetry/sdk-node'
import { PooledIdGenerator } from './id-generator.js'

test('ids cut from the random pool stay valid W3C ids and never repeat, across many refills of the pool', () => {
  const ids = new PooledIdGenerator()
  const seen = new Set<string>()
  // 4 KiB a pool: 256 trace ids or 512 span ids; this crosses about 80 refills, each id at a different offset.
  for (let i = 0; i < 20000; i++) {
    const traceId = ids.generateTraceId()
    const spanId = ids.generateSpanId()
    assert.ok(isValidTraceId(traceId), traceId)
    assert.ok(isValidSpanId(spanId), spanId)
    assert.ok(!seen.has(traceId) && !seen.has(spanId), 'an id handed out twice')
    seen.add(traceId)
    seen.add(spanId)
  }
})

test('the hash of a trace id read from the pool is the SDK ratio sampler\'s own, across refills, and none is given for another id', () => {
  const ids = new PooledIdGenerator()
  const sampler = new tracing.TraceIdRatioBasedSampler(0.5) as unknown as { _accumulate: (id: string) => number }
  // Span ids between trace ids put each trace id at another offset of the pool, and some across a refill.
  for (let i = 0; i < 5000; i++) {
    if (i % 3 === 0) ids.generateSpanId()
    const traceId = ids.generateTraceId()
    assert.equal(ids.traceHashOf(traceId), sampler._accumulate(traceId), traceId)
  }
  const traceId = ids.generateTraceId()
  ids.giveBackTraceId('0af7651916cd43dd8448eb211c80319c')
  assert.equal(ids.traceHashOf('0af7651916cd43dd8448eb211c80319c'), undefined, 'an id not cut from the pool has no hash from it')
  assert.equal(ids.traceHashOf(traceId), sampler._accumulate(traceId))
})
