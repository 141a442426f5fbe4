import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { projectRoot } from '../domain/paths.js'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, uniqueName } from '../../test/helpers/database.js'
import { freePort } from '../../test/helpers/ports.js'

interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind?: number, attributes?: Array<{ key: string, value: Record<string, unknown> }> }
interface OtlpBody { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: { stringValue?: string } }> }, scopeSpans: Array<{ scope: { name: string }, spans: OtlpSpan[] }> }> }

test('started as production starts it, the api exports one trace per request over OTLP: HTTP, Fastify, Redis and PostgreSQL spans', { timeout: 60000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  // A small OTLP/HTTP receiver: JSON encoding, so the test can read what arrives.
  const received: Array<{ service: string, scope: string, span: OtlpSpan }> = []
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        for (const rs of (JSON.parse(body) as OtlpBody).resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? ''
          for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ service, scope: ss.scope.name, span })
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  const receiverPort = await freePort()
  receiver.listen(receiverPort, '127.0.0.1')
  t.after(() => { receiver.close() })

  const port = await freePort()
  const child = spawn(process.execPath, ['--import', join(projectRoot, 'dist', 'plugins', 'telemetry', 'otel-preload.js'), join(projectRoot, 'dist', 'services', 'api', 'main.js')], {
    cwd: projectRoot,
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: db.url, DB_SCHEMA: db.schema, DB_POOL_MIN: '1', PORT: String(port), LOG_LEVEL: 'warn',
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('otel')}:`, SERVICE_API_KEY: TEST_SERVICE_KEY,
      OTEL_SERVICE_NAME: 'api', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiverPort}`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none'
    },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${port}/health/live`).then((r) => r.ok, () => false)); i++) await sleep(100)

  // W3C trace context from a caller: the request joins the caller's trace.
  const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736'
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/leads/${lead?.id}`, { headers: { ...SERVICE_HEADERS, traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` } })
  assert.equal(res.status, 200, stderr)
  let server: OtlpSpan | undefined
  for (let i = 0; i < 50 && !server; i++) {
    await sleep(100)
    server = received.find((r) => r.scope === '@opentelemetry/instrumentation-http' && r.span.name === 'GET /api/v1/leads/:id')?.span
  }
  assert.ok(server, `no server span among ${received.map((r) => r.span.name).join(', ')}`)
  assert.equal(server.traceId, callerTrace, 'the traceparent of the caller was continued')
  const expected = ['@opentelemetry/instrumentation-http', '@fastify/otel', '@opentelemetry/instrumentation-ioredis', '@opentelemetry/instrumentation-pg']
  const traceOf = () => received.filter((r) => r.span.traceId === server?.traceId)
  // Spans arrive in batches, in no particular order.
  for (let i = 0; i < 50 && !expected.every((scope) => traceOf().some((r) => r.scope === scope)); i++) await sleep(100)
  const trace = traceOf()
  const scopes = new Set(trace.map((r) => r.scope))
  assert.ok(trace.every((r) => r.service === 'api'))
  for (const scope of expected) {
    assert.ok(scopes.has(scope), `${scope} missing from the request's trace: ${[...scopes].join(', ')}`)
  }
  const query = trace.find((r) => r.scope === '@opentelemetry/instrumentation-pg' && r.span.name.startsWith('pg.query'))
  assert.ok(query?.span.attributes?.some((a) => a.key === 'db.query.fingerprint'), 'the pg span carries the query fingerprint')
  assert.ok(query?.span.attributes?.some((a) => a.key === 'db.query.text'), 'stable database semantic conventions')
  // OTLP span kind 2 is SERVER: one per request, @fastify/otel's spans are internal.
  assert.equal(trace.filter((r) => r.span.kind === 2).length, 1, 'one server span: no duplicate')
})
