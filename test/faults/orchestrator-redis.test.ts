import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import WebSocket from 'ws'
import { buildOrchestrator } from '../../services/orchestrator/app.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'
import { SERVICE_HEADERS, testEnv, uniqueName } from '../helpers/database.js'
import type { PrivateRedis } from '../helpers/private-redis.js'
import { schemaAndPrivateRedis } from '../helpers/private-stores.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../helpers/services.js'

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
async function orchestratorOnPrivateRedis (t: TestContext, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, redis: PrivateRedis, log: ReturnType<typeof logLines>, leads: (n: number) => Promise<string[]> }> {
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
      EVENTS_CHANNEL: uniqueName('events'),
      ...env
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

test('with the orchestrator\'s Redis hung (SIGSTOP), routing a lead and a batch of 3 answer within the Redis budget, not after the 10 s client backstop, and the unpublished events are logged once and counted', async (t) => {
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
  // The first lead routed while Redis was hung is logged as not published, by its id: its publish timed out (its
  // PUBLISH stays queued, the other instances may get it late). The batch's, within the same 10 s, are counted, not
  // logged one by one; all four are in /metrics.
  const lines = log.read()
  const unpublished = lines.filter((l) => typeof l.msg === 'string' && /^event publish (failed|timed out)/.test(l.msg))
  assert.deepEqual(unpublished.map((l) => [l.leadId, l.msg]), [[one, 'event publish timed out; delivered to this instance now, other instances may receive it late or not at all']], log.text())
  assert.match((await app.inject('/metrics')).body, /^orchestrator_events_total\{reach="instance",service="orchestrator"\} 4$/m)
  assert.ok(!log.text().includes(AGENT_NAME), log.text())
})

test('CACHE_BREAKER_THRESHOLD and CACHE_BREAKER_COOLDOWN_MS set the orchestrator\'s event publishing breaker with its cache\'s: at 1, the second lead routed while Redis hangs waits for Redis not at all, until the cooldown lets a probe through', async (t) => {
  const { app, redis, leads } = await orchestratorOnPrivateRedis(t, { CACHE_BREAKER_THRESHOLD: '1', CACHE_BREAKER_COOLDOWN_MS: '1500' })
  const route = async (id: string | undefined): Promise<number> => {
    const { ms, value } = await timed(() => app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${id ?? ''}/route`, headers: SERVICE_HEADERS }))
    assert.equal(value.statusCode, 200, value.body)
    return ms
  }
  const [warm, first, second, third] = await leads(4)
  await route(warm)
  redis.pause()
  // The first waits out a budget: the cache's invalidation and the event's publish each fail once, which opens both.
  const waited = await route(first)
  assert.ok(waited >= COMMAND_TIMEOUT_MS, `the first lead waited ${waited.toFixed(0)} ms`)
  // Either breaker still closed would wait a budget (COMMAND_TIMEOUT_MS) for Redis here.
  const skipped = await route(second)
  assert.ok(skipped < COMMAND_TIMEOUT_MS, `the second lead waited ${skipped.toFixed(0)} ms`)
  // Past the cooldown each breaker lets one probe through, which waits its budget.
  await sleep(1600)
  const probed = await route(third)
  assert.ok(probed >= COMMAND_TIMEOUT_MS, `after the cooldown the third lead waited ${probed.toFixed(0)} ms`)
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

/** A WebSocket client on an orchestrator's events route: the lead ids of the events it received, in order. */
async function eventClient (url: string): Promise<{ ws: WebSocket, leads: string[] }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers: SERVICE_HEADERS })
  const leads: string[] = []
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      const event = JSON.parse(data.toString()) as { type: string, leadId?: string }
      if (event.type === 'hello') resolve()
      else leads.push(String(event.leadId))
    })
    ws.once('error', reject)
  })
  return { ws, leads }
}

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

test('an event whose publish timed out while Redis hung is delivered once to this instance\'s clients when Redis resumes, not twice', async (t) => {
  const { db, redis } = await schemaAndPrivateRedis(t)
  const data = await startDataService(t, db)
  await insertAgents(db, [{ name: AGENT_NAME, capacity: 100 }])
  const env = { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS), CACHE_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS), CACHE_PREFIX: `${uniqueName('orc-redis')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const a = await startOrchestrator(t, db, data.url, env, true)
  const b = await startOrchestrator(t, db, data.url, env, true)
  t.after(async () => { redis.resume() })
  const onA = await eventClient(a.url)
  const onB = await eventClient(b.url)
  t.after(async () => { onA.ws.close(); onB.ws.close() })
  const leads = await insertLeads(db, 12)
  const route = async (from: number, to: number): Promise<void> => {
    for (const lead of leads.slice(from, to + 1)) {
      const routed = await a.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })
      assert.equal(routed.statusCode, 200, routed.body)
    }
  }
  await route(0, 0)
  // Publishes time out until the breaker opens: those PUBLISH commands stay queued in the connection and Redis runs
  // them once it resumes, after this instance delivered their events to its own clients.
  redis.pause()
  await route(1, 7)
  redis.resume()
  await sleep(800)
  await route(8, 9)
  // Past the breaker's cooldown, publishing works again.
  await sleep(2500)
  await route(10, 11)
  await sleep(500)
  assert.deepEqual(onA.leads, leads, 'every event once, in routing order, on the routing instance')
  const onBCounts = new Map<string, number>()
  for (const lead of onB.leads) onBCounts.set(lead, (onBCounts.get(lead) ?? 0) + 1)
  for (const [lead, n] of onBCounts) assert.equal(n, 1, `${lead} reached the other instance's client ${n} times`)
  for (const i of [0, 10, 11]) assert.ok(onBCounts.has(leads[i] as string), `L${i} reached the other instance`)
})
