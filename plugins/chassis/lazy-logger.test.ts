import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import { lazyChildLogger } from './lazy-logger.js'

function capture (level: string) {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  return { logger: pino({ level }, stream), lines }
}

test('a request logger logs with its bindings at enabled levels and not below', async () => {
  const { logger, lines } = capture('warn')
  const child = lazyChildLogger(logger, { reqId: 'r1' }, {})
  child.info('hidden')
  child.warn({ a: 1 }, 'shown')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(lines.length, 1)
  assert.equal(lines[0]?.reqId, 'r1')
  assert.equal(lines[0]?.msg, 'shown')
  assert.equal(lines[0]?.a, 1)
  assert.equal(child.level, 'warn')
  const grandchild = child.child({ step: 'x' })
  grandchild.error('deep')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(lines[1]?.reqId, 'r1')
  assert.equal(lines[1]?.step, 'x')
})

test('a route or plugin whose own log level is below the service\'s writes its lines at that level, as Fastify\'s own request logger does', async () => {
  const { logger, lines } = capture('warn')
  const child = lazyChildLogger(logger, { reqId: 'r2' }, { level: 'debug' })
  child.info('route info')
  child.debug('route debug')
  child.trace('hidden')
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(lines.map((l) => [l.msg, l.reqId]), [['route info', 'r2'], ['route debug', 'r2']])
  assert.equal(child.level, 'debug')
})
