import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema } from '../../test/helpers/database.js'
import { startOtlpReceiver, startTracedService, waitForSpans } from '../../test/helpers/otlp.js'

const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
const traceparent = (flags: string): string => `00-${traceId}-00f067aa0ba902b7-${flags}`

test('a log line of an unsampled request carries no trace ids, while a sampled request\'s lines keep its trace and span ids', { timeout: 60000 }, async (t) => {
  const otlp = await startOtlpReceiver(t)
  const db = await createTestSchema()
  t.after(() => db.drop())
  // The SDK's default sampler, parent-based: the caller's flag decides.
  const api = await startTracedService(t, 'api', 'dist/services/api/main.js', otlp.url, {
    DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false',
    LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', TRUST_PROXY: '127.0.0.1/32'
  })
  // Request ids of the shape NGINX sends ($request_id, 32 hex digits), which the chassis takes as the request's from a
  // trusted proxy (this test stands for NGINX, on loopback).
  const SAMPLED = '5a'.repeat(16)
  const UNSAMPLED = 'c0'.repeat(16)
  for (const [id, flags] of [[SAMPLED, '01'], [UNSAMPLED, '00']] as const) {
    const res = await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: { ...SERVICE_HEADERS, 'x-request-id': id, traceparent: traceparent(flags) } })
    assert.equal(res.status, 200, api.stderr())
  }
  await waitForSpans(otlp.received, (spans) => spans.some((s) => s.span.name === 'GET /api/v1/leads'))
  // The child's lines arrive through a pipe: wait for both requests' last line.
  for (let i = 0; i < 50 && api.stdout().split('request completed').length < 3; i++) await sleep(100)
  const server = otlp.received.find((s) => s.span.name === 'GET /api/v1/leads')
  assert.ok(server, 'the sampled request\'s server span was exported')
  const lines = (reqId: string): Array<Record<string, unknown>> => api.stdout().split('\n').filter((l) => l.includes(`"reqId":"${reqId}"`)).map((l) => JSON.parse(l) as Record<string, unknown>)
  // The request's line (LOG_REQUESTS=answered, the default) is written when it is answered, inside its trace.
  const completed = lines(SAMPLED).find((line) => line.msg === 'request completed')
  assert.ok(completed, api.stdout())
  assert.equal((completed.req as { url?: string } | undefined)?.url, '/api/v1/leads?limit=1', 'the line is the request\'s own')
  assert.equal(completed.trace_id, traceId, 'a sampled line leads to its trace')
  assert.equal(completed.span_id, server.span.spanId, 'and to the request\'s server span')
  assert.equal(completed.trace_flags, '01')
  const unsampled = lines(UNSAMPLED)
  assert.equal(unsampled.length, 1, api.stdout())
  for (const line of unsampled) assert.deepEqual([line.trace_id, line.span_id, line.trace_flags], [undefined, undefined, undefined], JSON.stringify(line))
})

for (const detail of ['false', 'true']) {
  test(`a caller that does not present the service key starts a trace of its own: the ids and state it sends, which may spell a phone or name, reach no span and no log line (OTEL_FASTIFY_DETAIL=${detail})`, { timeout: 60000 }, async (t) => {
    const otlp = await startOtlpReceiver(t)
    const db = await createTestSchema()
    t.after(() => db.drop())
    const api = await startTracedService(t, 'api', 'dist/services/api/main.js', otlp.url, {
      DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false',
      LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', OTEL_FASTIFY_DETAIL: detail
    })
    const phone = '5551234567'
    // An API key that is not valid: any caller from outside, answered 401, traced all the same.
    const res = await fetch(`${api.url}/api/v1/leads?limit=1`, {
      headers: { 'x-api-key': 'lck_AAAAAAAAAAAA_notavalidsecretatall', traceparent: `00-0000000000000000000000${phone}-000000${phone}-01`, tracestate: `lead=Ann.Lee.${phone}`, baggage: 'email=ann%40example.com' }
    })
    assert.equal(res.status, 401, api.stderr())
    await waitForSpans(otlp.received, (spans) => spans.some((s) => s.span.name === 'GET /api/v1/leads'))
    for (let i = 0; i < 50 && !api.stdout().includes('request completed'); i++) await sleep(100)
    const server = otlp.received.find((s) => s.span.name === 'GET /api/v1/leads')
    assert.ok(server)
    // Before, the caller's trace id, parent span id and state were continued into every span and log line.
    assert.doesNotMatch(server.span.traceId, new RegExp(phone))
    assert.equal(server.span.parentSpanId ?? '', '', 'a root span, not a child of the caller\'s')
    const exported = otlp.exports.map((e) => e.body.toString('latin1')).join('\n')
    for (const text of [phone, 'Ann.Lee', 'ann%40example.com']) assert.ok(!exported.includes(text), `${text} in an export`)
    const completed = api.stdout().split('\n').filter((l) => l.includes('request completed')).map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.equal(completed.length, 1, api.stdout())
    assert.equal(completed[0]?.trace_id, server.span.traceId, 'the line leads to the request\'s own trace')
    for (const text of [phone, 'Ann.Lee']) assert.ok(!api.stdout().includes(text), `${text} in a log line`)
  })
}
