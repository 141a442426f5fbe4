import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isValidSpanId, isValidTraceId } from '@opentelemetry/api'
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
