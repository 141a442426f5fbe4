import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { buildOrchestrator } from '../../services/orchestrator/app.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'
import { SERVICE_HEADERS, testEnv, uniqueName } from '../helpers/database.js'
import type { PrivateRedis } from '../helpers/private-redis.js'
import { schemaAndPrivateRedis } from '../helpers/private-stores.js'
import { insertAgents, insertLeads, startDataService } from '../helpers/services.js'

type TestContext = { after: (fn: () => Promise<void>) => void, diagnostic: (message: string) => void }

const COMMAND_TIMEOUT_MS = 100
const ACK_TIMEOUT_MS = 200
/**
 * What routing one lead may cost while the orchestrator's Redis does not answer: the cache's invalidation (a command
 * budget and the wait for the other instances' acknowledgements) and the event's publish (one command budget), each
 * stretched up to 10x on a late process, plus a busy 2-core machine's lag. The client's 10 s backstop is far past it.
 */
const ROUTE_BOUND_MS = 1000 + 2 * COMMAND_TIMEOUT_MS + ACK_TIMEOUT_MS
// An agent's name is a person's name: it may reach the WebSocket clients, never the logs.
const AGENT_NAME = 'Quixotica'

/** Log lines as parsed JSON, from a logger at `warn`. */
function logLines (): { stream: Writable, read: () => Array<Record<string, unknown>>, text: () => string } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { stream, text: () => text, read: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

/** A data-service (no Redis) and an orchestrator on a Redis of the test's own, one agent licensed for CA auto. */
async function orchestratorOnPrivateRedis (t: TestContext): Promise<{ app: FastifyInstance, redis: PrivateRedis, log: ReturnType<typeof logLines>, leads: (n: number) => Promise<string[]> }> {
  const { db, redis } = await schemaAndPrivateRedis(t)
  const data = await startDataService(t, db)
  await insertAgents(db, [{ name: AGENT_NAME, capacity: 100 }])
  const log = logLines()
  const config = loadOrchestratorConfig({
    dotenv: false,
    env: testEnv(db, {
      DATA_SERVICE_URL: data.url,
      REDIS_URL: redis.url,
      REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
      CACHE_ENABLED: 'true',
      CACHE_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS),
      CACHE_PREFIX: `${uniqueName('orc-redis')}:`,
      EVENTS_CHANNEL: uniqueName('events')
    })
  })
  const app = await buildOrchestrator(config, { logger: { level: 'warn', stream: log.stream } })
  t.after(async () => {
    redis.resume()
    await app.close()
  })
  return { app, redis, log, leads: async (n) => insertLeads(db, n) }
}

async function timed<T> (call: () => Promise<T>): Promise<{ ms: number, value: T }> {
  const started = performance.now()
  const value = await call()
  return { ms: performance.now() - started, value }
}

test('with the orchestrator\'s Redis hung (SIGSTOP), routing a lead and a batch of 3 answer within the Redis budget, not after the 10 s client backstop, and the unpublished event is logged', async (t) => {
  const { app, redis, log, leads } = await orchestratorOnPrivateRedis(t)
  const [warm] = await leads(1)
  assert.equal((await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${warm}/route`, headers: SERVICE_HEADERS })).statusCode, 200)
  const [one] = await leads(1)
  redis.pause()
  const single = await timed(() => app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${one}/route`, headers: SERVICE_HEADERS }))
  t.diagnostic(`route with Redis hung: ${single.ms.toFixed(0)} ms`)
  assert.equal(single.value.statusCode, 200, single.value.body)
  assert.ok(single.ms < ROUTE_BOUND_MS, `route answered after ${single.ms.toFixed(0)} ms`)
  await leads(3)
  const batch = await timed(() => app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 3 } }))
  t.diagnostic(`route-batch of 3 with Redis hung: ${batch.ms.toFixed(0)} ms`)
  assert.equal(batch.value.statusCode, 200, batch.value.body)
  assert.equal(batch.value.json().assigned.length, 3, batch.value.body)
  assert.ok(batch.ms < 3 * ROUTE_BOUND_MS, `route-batch answered after ${batch.ms.toFixed(0)} ms`)
  // Each of the four leads routed while Redis was hung is logged as not published, by its id.
  const unpublished = new Set(log.read().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('event publish failed')).map((l) => l.leadId))
  for (const id of [one, ...batch.value.json().assigned.map((a: { leadId: string }) => a.leadId)]) assert.ok(unpublished.has(id), `${String(id)}: ${log.text()}`)
  assert.ok(!log.text().includes(AGENT_NAME), log.text())
})

test('an event publish Redis refuses (ACL) is logged without the command\'s arguments: no event JSON, no agent name', async (t) => {
  const { app, redis, log, leads } = await orchestratorOnPrivateRedis(t)
  const admin = new Redis(redis.url)
  t.after(async () => { admin.disconnect() })
  await admin.call('ACL', 'SETUSER', 'default', '-publish')
  const [lead] = await leads(1)
  const routed = await app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })
  assert.equal(routed.statusCode, 200, routed.body)
  assert.equal(routed.json().agentName, AGENT_NAME)
  const unpublished = log.read().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('event publish failed'))
  assert.equal(unpublished.length, 1, log.text())
  assert.match(JSON.stringify(unpublished[0]?.err), /NOPERM|permission/i, 'the reason is logged')
  assert.ok(!log.text().includes(AGENT_NAME), log.text())
  assert.ok(!log.text().includes('"args"'), log.text())
  assert.ok(!log.text().includes('lead.assigned'), log.text())
})
