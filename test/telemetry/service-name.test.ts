import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../../services/platform/paths.js'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, uniqueName } from '../helpers/database.js'
import { startOtlpReceiver, startTracedService, waitForSpans } from '../helpers/otlp.js'

test('a service started without OTEL_SERVICE_NAME names itself in its spans (not unknown_service:node), with version and instance id', { timeout: 60000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const otlp = await startOtlpReceiver(t)
  const env = { DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_PREFIX: `${uniqueName('svcname')}:` }
  const { version } = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }
  const data = await startTracedService(t, '', 'dist/services/data-service/main.js', otlp.url, env)
  const started = [
    { name: 'api', ...await startTracedService(t, '', 'dist/services/api/main.js', otlp.url, env) },
    { name: 'data-service', ...data },
    { name: 'orchestrator', ...await startTracedService(t, '', 'dist/services/orchestrator/main.js', otlp.url, { ...env, DATA_SERVICE_URL: data.url }) }
  ]
  for (const s of started) {
    const res = await fetch(`${s.url}/health/ready`, { headers: SERVICE_HEADERS }).catch((err: Error) => assert.fail(`${s.name}: ${err.message}\n${s.stderr()}`))
    await res.arrayBuffer()
  }
  const names = (): Set<string> => new Set(otlp.received.map((r) => r.service))
  await waitForSpans(otlp.received, () => started.every((s) => names().has(s.name)))
  assert.ok(!names().has('unknown_service:node'), [...names()].join(', '))
  const instances = new Set<string>()
  for (const s of started) {
    const span = otlp.received.find((r) => r.service === s.name)
    assert.ok(span, `${s.name}: spans under its own name (got ${[...names()].join(', ')})`)
    assert.equal(span.resource['service.version'], version)
    assert.match(span.resource['service.instance.id'] ?? '', /^[0-9a-f-]{36}$/)
    instances.add(span.resource['service.instance.id'] ?? '')
  }
  assert.equal(instances.size, 3, 'each process has its own instance id')
})

test('OTEL_SERVICE_NAME still overrides the name a service gives itself', { timeout: 60000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const otlp = await startOtlpReceiver(t)
  const env = { DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_PREFIX: `${uniqueName('svcname')}:` }
  const api = await startTracedService(t, 'edge-api', 'dist/services/api/main.js', otlp.url, env)
  await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })
  await waitForSpans(otlp.received, (spans) => spans.length > 0)
  assert.ok(otlp.received.length > 0)
  assert.ok(otlp.received.every((r) => r.service === 'edge-api'), [...new Set(otlp.received.map((r) => r.service))].join(', '))
})
