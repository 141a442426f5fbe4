import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { logRedaction } from './log-redaction.js'

function logger (mixin: () => object): { log: pino.Logger, seen: object[], lines: string[] } {
  const seen: object[] = []
  const lines: string[] = []
  const log = pino({
    ...logRedaction,
    mixin,
    // Records what pino hands to the formatter: the logged object itself, or a copy of it.
    formatters: { log: (o) => { seen.push(o); return o } }
  }, { write: (line: string) => { lines.push(line) } })
  return { log, seen, lines }
}

test('a log line whose mixin adds no field (an unsampled trace\'s) is written from the logged object itself, not a copy of it', () => {
  const { log, seen, lines } = logger(() => ({}))
  const logged = { res: { statusCode: 200 }, responseTime: 1.5 }
  log.info(logged, 'request completed')
  assert.equal(seen[0], logged, 'no copy of the logged object was made')
  assert.deepEqual(JSON.parse(lines[0] ?? '{}').res, { statusCode: 200 })
})

test('a mixin\'s fields still reach the line, and the line\'s own fields of the same name win', () => {
  const { log, lines } = logger(() => ({ trace_id: 'from-mixin', span_id: 'from-mixin' }))
  log.info({ span_id: 'own', responseTime: 1.5 }, 'request completed')
  const line = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>
  assert.deepEqual([line.trace_id, line.span_id, line.responseTime], ['from-mixin', 'own', 1.5])
})
