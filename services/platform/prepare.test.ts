import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'

// Each build runs in a process of its own: once loaded, the parser stays loaded for the life of the process.
const child = fileURLToPath(new URL('../../test/helpers/parser-at-init.js', import.meta.url))

/** Whether the parser was loaded when the service's Fastify instance was created, and once it was built. */
function parserLoaded (service: string, queryStats: boolean): { loaded: boolean, built: boolean } {
  const out = execFileSync(process.execPath, [child, service], { env: { PATH: process.env.PATH ?? '', QUERY_STATS_ENABLED: String(queryStats) }, encoding: 'utf8' })
  return JSON.parse(out) as { loaded: boolean, built: boolean }
}

for (const service of ['api', 'data-service', 'orchestrator']) {
  test(`${service}: PostgreSQL's parser is loaded before Fastify starts, not while the app registers (which can leave nextTick on V8's slow path)`, () => {
    assert.deepEqual(parserLoaded(service, true), { loaded: true, built: true })
  })
}

test('with QUERY_STATS_ENABLED=false the query parser is not loaded to build a service', () => {
  assert.deepEqual(parserLoaded('api', false), { loaded: false, built: false })
})
