import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import WebSocket from 'ws'
import { createTestSchema, uniqueName, SERVICE_HEADERS, type TestSchema } from '../../test/helpers/database.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../../test/helpers/services.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A WebSocket client on the events route, collecting what it receives after the greeting. */
async function listen (url: string, headers: Record<string, string> = SERVICE_HEADERS): Promise<{ ws: WebSocket, events: Array<Record<string, unknown>>, next: () => Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers })
  const events: Array<Record<string, unknown>> = []
  const waiting: Array<(e: Record<string, unknown>) => void> = []
  ws.on('message', (data: Buffer) => {
    const event = JSON.parse(data.toString()) as Record<string, unknown>
    if (event.type === 'hello') return
    const waiter = waiting.shift()
    if (waiter) waiter(event)
    else events.push(event)
  })
  const [greeting] = await once(ws, 'message') as [Buffer]
  assert.equal(JSON.parse(greeting.toString()).type, 'hello')
  return { ws, events, next: () => new Promise((resolve) => { const e = events.shift(); if (e) resolve(e); else waiting.push(resolve) }) }
}

async function setup (t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string>): Promise<{ db: TestSchema, dataUrl: string }> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const data = await startDataService(t, db, env)
  await insertAgents(db, [{ name: 'Ws', capacity: 10 }])
  return { db, dataUrl: data.url }
}

test('a client connected to any orchestrator instance sees the routing events of every instance (Redis)', async (t) => {
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('ev')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const b = await startOrchestrator(t, db, dataUrl, env)
  const client = await listen(a.url)
  t.after(async () => { client.ws.close() })
  const [lead] = await insertLeads(db, 1)
  const routed = await b.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })
  assert.equal(routed.statusCode, 200, routed.body)
  const event = await client.next()
  assert.equal(event.type, 'lead.assigned')
  assert.equal(event.leadId, lead)
  assert.equal(event.agentId, routed.json().agentId)
  // Its own instance's events come once, through the same channel.
  const [second] = await insertLeads(db, 1)
  await a.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${second}/route`, headers: SERVICE_HEADERS })
  assert.equal((await client.next()).leadId, second)
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(client.events.length, 0, 'no duplicate')
})

test('without Redis the events stay in the instance; an unauthenticated WebSocket is refused', async (t) => {
  const env = { CACHE_PREFIX: `${uniqueName('ev')}:` }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const client = await listen(a.url)
  t.after(async () => { client.ws.close() })
  const [lead] = await insertLeads(db, 1)
  await a.app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 5 } })
  assert.equal((await client.next()).leadId, lead)
  const refused = new WebSocket(`${a.url.replace('http', 'ws')}/orchestrator/v1/events`)
  refused.on('error', () => {})
  const [, response] = await once(refused, 'unexpected-response') as [unknown, { statusCode: number }]
  assert.equal(response.statusCode, 401)
  refused.terminate()
})
