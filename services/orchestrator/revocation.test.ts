import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import WebSocket from 'ws'
import { createTestSchema, uniqueName, SERVICE_HEADERS } from '../../test/helpers/database.js'
import { eventually } from '../../test/helpers/eventually.js'
import { revokeWithCli } from '../../test/helpers/keys-cli.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../../test/helpers/services.js'
import { EventEmitter } from 'node:events'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { TEST_DATABASE_URL, testEnv } from '../../test/helpers/database.js'
import { buildOrchestrator } from './app.js'
import { loadOrchestratorConfig } from './config.js'
import { KEY_REVOKED_CLOSE_CODE, KeySockets } from './key-sockets.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

interface Client {
  ws: WebSocket
  /** Arrival times of the lead.assigned events. */
  events: number[]
  closed: Promise<{ code: number, reason: string, at: number }>
}

async function connect (url: string, headers: Record<string, string>): Promise<Client> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers })
  const events: number[] = []
  const closed = new Promise<{ code: number, reason: string, at: number }>((resolve) => {
    ws.on('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString(), at: performance.now() }))
  })
  const [greeting] = await once(ws, 'message') as [Buffer]
  assert.equal(JSON.parse(greeting.toString()).type, 'hello')
  ws.on('message', (data: Buffer) => { if (JSON.parse(data.toString()).type === 'lead.assigned') events.push(performance.now()) })
  return { ws, events, closed }
}

async function within (ms: number, what: string): Promise<never> {
  await new Promise((resolve) => setTimeout(resolve, ms).unref())
  throw new Error(`not within ${ms} ms: ${what}`)
}

for (const setup of ['Redis', 'no Redis'] as const) {
  test(`a revoked key's open WebSockets are closed with 4401 within a second on every orchestrator instance and get no further events (keys CLI, ${setup})`, async (t) => {
    const db = await createTestSchema()
    t.after(() => db.drop())
    const env: Record<string, string> = { CACHE_PREFIX: `${uniqueName('wsrev')}:`, EVENTS_CHANNEL: uniqueName('events'), API_KEY_CACHE_TTL: '300' }
    if (setup === 'Redis') env.REDIS_URL = REDIS_URL
    const data = await startDataService(t, db, env)
    await insertAgents(db, [{ name: 'Revoke', capacity: 100 }])
    const instances = [await startOrchestrator(t, db, data.url, env, true), await startOrchestrator(t, db, data.url, env, true)]
    const { id, key } = await instances[0]!.app.apiKeys.mint('live feed', ['routing'])
    const keyed = await Promise.all(instances.map((o) => connect(o.url, { 'x-api-key': key })))
    // Sockets of the platform's own services on the same instances: they keep receiving, so events did flow.
    const service = await Promise.all(instances.map((o) => connect(o.url, SERVICE_HEADERS)))
    t.after(async () => { for (const c of [...keyed, ...service]) c.ws.terminate() })
    const routeOnEach = async (): Promise<void> => {
      for (const o of instances) {
        const [lead] = await insertLeads(db, 1)
        const routed = await o.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })
        assert.equal(routed.statusCode, 200, routed.body)
      }
    }
    await routeOnEach()
    await eventually(() => keyed.every((c) => c.events.length >= 1), 'the keyed sockets receive events before the revocation', 15000)

    const printedAt = await revokeWithCli(db, id)
    await routeOnEach()
    const closes = await Promise.all(keyed.map((c) => Promise.race([c.closed, within(15000, 'the keyed socket closed')])))
    t.diagnostic(`closed ${closes.map((c) => Math.round(c.at - printedAt)).join(' and ')} ms after the CLI said "revoked"`)
    for (const close of closes) {
      assert.equal(close.code, KEY_REVOKED_CLOSE_CODE)
      assert.equal(close.reason, 'key revoked')
      assert.ok(close.at - printedAt < 1000, `closed ${Math.round(close.at - printedAt)} ms after the CLI said "revoked"`)
    }
    const expected = setup === 'Redis' ? 4 : 2
    await eventually(() => service.every((c) => c.events.length >= expected), 'the service sockets receive the later events', 15000)
    for (const c of keyed) assert.deepEqual(c.events.filter((at) => at > printedAt), [], 'no event reached a revoked key after the CLI said "revoked"')
    // Reconnecting with the revoked key is refused at the upgrade.
    const again = new WebSocket(`${instances[1]!.url.replace('http', 'ws')}/orchestrator/v1/events`, { headers: { 'x-api-key': key } })
    again.on('error', () => {})
    const [, response] = await once(again, 'unexpected-response') as [unknown, { statusCode: number }]
    assert.equal(response.statusCode, 401)
    again.terminate()
  })
}

test('a WebSocket accepted in the instant its key is revoked (verified just before) is closed on arrival', async (t) => {
  const pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, min: 0, healthCheckInterval: 0 })
  t.after(() => pool.close())
  const store = new ApiKeyStore(pool)
  const sockets = new KeySockets(store, 'routing', (err) => { throw err })
  t.after(async () => sockets.stop())
  const closed: Array<[number, string]> = []
  const socket = Object.assign(new EventEmitter(), { close: (code: number, reason: string) => { closed.push([code, reason]) } })
  // The revocation is heard after the upgrade request was verified and before its handler tracks the socket.
  await store.keyChanged({ id: 'AAAAAAAAAAAA', revoked: true })
  sockets.add('AAAAAAAAAAAA', socket as never)
  assert.deepEqual(closed, [[KEY_REVOKED_CLOSE_CODE, 'key revoked']])
  assert.equal(sockets.size, 0)
})

test('a WebSocket whose key is revoked while the notification link is down is closed once the link is back', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  // The link stays down 2 s after a drop, long enough to revoke in the gap.
  const pool = createConnectionPool({ connectionString: db.url, schema: db.schema, min: 1, max: 5, healthCheckInterval: 0, listener: { reconnectDelayMs: 2000 } })
  await pool.start()
  t.after(() => pool.close())
  const app = await buildOrchestrator(loadOrchestratorConfig({ dotenv: false, env: testEnv(db, { CACHE_PREFIX: `${uniqueName('wsrev')}:` }) }), { pool })
  t.after(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const revoked = await app.apiKeys.mint('revoked unheard', ['routing'])
  const narrowed = await app.apiKeys.mint('narrowed unheard', ['routing'])
  const kept = await app.apiKeys.mint('kept', ['routing'])
  const clients = await Promise.all([revoked, narrowed, kept].map((k) => connect(url, { 'x-api-key': k.key })))
  t.after(async () => { for (const c of clients) c.ws.terminate() })
  const pid = pool.notifications.processId
  await db.sql('SELECT pg_terminate_backend($1)', [pid])
  await eventually(() => !pool.notifications.up, 'the link is seen down', 5000)
  await db.sql('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [revoked.id])
  await db.sql("UPDATE api_keys SET scopes = '{leads:read}' WHERE id = $1", [narrowed.id])
  assert.equal(pool.notifications.up, false, 'changed while nobody listened')
  const upAt = await eventually(() => pool.notifications.up, 'the link reconnects', 15000)
  const [gone, changed] = await Promise.all(clients.slice(0, 2).map((c) => Promise.race([c.closed, within(15000, 'closed after the reconnect')])))
  assert.deepEqual([gone?.code, gone?.reason], [KEY_REVOKED_CLOSE_CODE, 'key revoked'])
  assert.deepEqual([changed?.code, changed?.reason], [KEY_REVOKED_CLOSE_CODE, 'key changed'])
  for (const c of [gone, changed]) assert.ok((c?.at ?? Infinity) - upAt < 1000, `closed ${Math.round((c?.at ?? Infinity) - upAt)} ms after the link was back`)
  assert.equal(clients[2]?.ws.readyState, WebSocket.OPEN, 'a socket of a key still valid stays open')
})

test('a WebSocket whose key\'s scopes or secret changed after its upgrade was verified, and before it was tracked, is closed on arrival; one verified after the change is kept', async (t) => {
  const pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, min: 0, healthCheckInterval: 0 })
  t.after(() => pool.close())
  const store = new ApiKeyStore(pool)
  const sockets = new KeySockets(store, 'routing', (err) => { throw err })
  t.after(async () => sockets.stop())
  const socketOf = (): { socket: never, closed: Array<[number, string]> } => {
    const closed: Array<[number, string]> = []
    return { socket: Object.assign(new EventEmitter(), { close: (code: number, reason: string) => { closed.push([code, reason]) } }) as never, closed }
  }
  // Before, only a revocation was remembered: a key that lost `routing` in that instant kept its socket for good.
  const verified = performance.now()
  await store.keyChanged({ id: 'BBBBBBBBBBBB', revoked: false })
  const narrowed = socketOf()
  sockets.add('BBBBBBBBBBBB', narrowed.socket, verified)
  assert.deepEqual(narrowed.closed, [[KEY_REVOKED_CLOSE_CODE, 'key changed']])
  // Verified after the change: the new scopes were read, the socket stays.
  const later = socketOf()
  sockets.add('BBBBBBBBBBBB', later.socket, performance.now())
  assert.deepEqual(later.closed, [])
  // A change of every key (the table emptied) likewise.
  const beforeAll = performance.now()
  await store.keyChanged({ all: true })
  const any = socketOf()
  sockets.add('CCCCCCCCCCCC', any.socket, beforeAll)
  assert.deepEqual(any.closed, [[KEY_REVOKED_CLOSE_CODE, 'key changed']])
  assert.equal(sockets.size, 1)
})
