import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ROOT_CONTEXT, context, createContextKey, trace } from '@opentelemetry/api'
import { core, node } from '@opentelemetry/sdk-node'
import { contextWithSpan } from './span-context.js'

const span = (id: string): ReturnType<typeof trace.wrapSpanContext> =>
  trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: id, traceFlags: 0 })

test('a request\'s context holds its span and every value of the context it continues, and what is set on it later keeps both, as the API\'s own context does', async () => {
  const other = createContextKey('lead-chassis test value')
  const later = createContextKey('lead-chassis test value set later')
  const caller = span('00f067aa0ba902b7')
  const parent = trace.setSpan(ROOT_CONTEXT.setValue(other, 'kept'), caller)
  const own = span('00f067aa0ba902b8')
  const ctx = contextWithSpan(parent, own)
  const api = trace.setSpan(parent, own)
  for (const [name, c] of [['chassis', ctx], ['API', api]] as const) {
    assert.equal(trace.getSpan(c), own, name)
    assert.equal(c.getValue(other), 'kept', name)
    const set = c.setValue(later, 'new')
    assert.deepEqual([trace.getSpan(set), set.getValue(other), set.getValue(later)], [own, 'kept', 'new'], name)
    const deleted = c.deleteValue(other)
    assert.deepEqual([trace.getSpan(deleted), deleted.getValue(other)], [own, undefined], name)
    // Deleting the span leaves no span at all, not the caller's it replaced.
    assert.deepEqual([trace.getSpan(trace.deleteSpan(c)), trace.deleteSpan(c).getValue(other)], [undefined, 'kept'], name)
    const suppressed = core.suppressTracing(c)
    assert.deepEqual([core.isTracingSuppressed(suppressed), trace.getSpan(suppressed)], [true, own], name)
    // One set on top of another: the later span wins, and its removal leaves none.
    const nested = contextWithSpan(c, caller)
    assert.equal(trace.getSpan(nested), caller, name)
    assert.equal(trace.getSpan(trace.deleteSpan(nested)), undefined, name)
    assert.equal(trace.getSpan(contextWithSpan(c, own).setValue(later, 1)), own, name)
  }
  // The original context is not changed by what is set on the ones made from it.
  assert.equal(ctx.getValue(later), undefined)
  // Carried through awaits by the context manager the SDK registers.
  new node.NodeTracerProvider().register()
  try {
    const seen = await context.with(ctx, async () => {
      await new Promise((resolve) => setImmediate(resolve))
      return [trace.getActiveSpan(), context.active().getValue(other)]
    })
    assert.deepEqual(seen, [own, 'kept'])
  } finally {
    context.disable()
    trace.disable()
  }
})
