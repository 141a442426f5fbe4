import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, uniqueName } from '../../test/helpers/database.js'
import { startOtlpReceiver, startTracedService, waitForSpans } from '../../test/helpers/otlp.js'

test('a request that crosses services is one trace: orchestrator, data-service and PostgreSQL', { timeout: 60000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  const otlp = await startOtlpReceiver(t)
  const env = { DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_PREFIX: `${uniqueName('xtrace')}:` }
  const data = await startTracedService(t, 'data-service', 'dist/services/data-service/main.js', otlp.url, env)
  const orchestrator = await startTracedService(t, 'orchestrator', 'dist/services/orchestrator/main.js', otlp.url, { ...env, DATA_SERVICE_URL: data.url })

  const res = await fetch(`${orchestrator.url}/orchestrator/v1/leads/${lead?.id}/score`, { headers: SERVICE_HEADERS })
  assert.equal(res.status, 200, orchestrator.stderr() + data.stderr())
  const inbound = () => otlp.received.find((r) => r.service === 'orchestrator' && r.span.kind === 2 && r.span.name.includes('/score'))
  await waitForSpans(otlp.received, () => inbound() !== undefined)
  const traceId = inbound()?.span.traceId
  assert.ok(traceId, `no orchestrator server span: ${otlp.received.map((r) => `${r.service} ${r.span.name}`).join(', ')}`)
  const trace = () => otlp.received.filter((r) => r.span.traceId === traceId)
  const complete = (): boolean => trace().some((r) => r.service === 'data-service' && r.scope === 'lead-chassis/db-pool') &&
    trace().some((r) => r.service === 'data-service' && r.span.kind === 2) && trace().some((r) => r.service === 'orchestrator' && r.span.kind === 3)
  await waitForSpans(otlp.received, complete)
  const spans = trace()
  const describe = spans.map((r) => `${r.service}:${r.scope}:${r.span.name}`).join('\n')
  // OTLP kinds: 2 SERVER, 3 CLIENT.
  const client = spans.find((r) => r.service === 'orchestrator' && r.span.kind === 3)
  const dataServer = spans.find((r) => r.service === 'data-service' && r.span.kind === 2)
  assert.ok(client, `the orchestrator's call to the data-service is a client span in the trace:\n${describe}`)
  assert.ok(dataServer, `the data-service's server span is in the same trace:\n${describe}`)
  assert.equal(dataServer.span.parentSpanId, client.span.spanId, 'the data-service continues the orchestrator\'s call')
  assert.ok(spans.some((r) => r.service === 'data-service' && r.scope === 'lead-chassis/db-pool'), `the data-service's query is in the trace:\n${describe}`)
})
