import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Socket } from 'node:net'
import pg from 'pg'
import { NotificationListener } from './listener.js'
import { TEST_DATABASE_URL, uniqueName } from '../../test/helpers/database.js'
import { eventually } from '../../test/helpers/eventually.js'
import { freePort } from '../../test/helpers/ports.js'

async function notify (channel: string, payload: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    await client.query('SELECT pg_notify($1, $2)', [channel, payload])
  } finally {
    await client.end()
  }
}

function channelName (): string {
  return uniqueName('ch').toLowerCase()
}

/** Records what a subscriber hears. */
function recorder (): { payloads: string[], downs: number, ups: number, handlers: { notification: (p: string) => void, down: () => void, up: () => void } } {
  const heard = { payloads: [] as string[], downs: 0, ups: 0 }
  return Object.assign(heard, { handlers: { notification: (p: string) => { heard.payloads.push(p) }, down: () => { heard.downs++ }, up: () => { heard.ups++ } } })
}

test('a LISTEN connection that is terminated comes back listening, and its subscribers hear down and up', async (t) => {
  const listener = new NotificationListener({ connectionString: TEST_DATABASE_URL }, { reconnectDelayMs: 50 })
  t.after(() => listener.close())
  const channel = channelName()
  const heard = recorder()
  await listener.subscribe(channel, heard.handlers)
  assert.equal(heard.ups, 1)
  await notify(channel, 'before')
  await eventually(() => heard.payloads.includes('before'), 'the first notification', 10000)
  const pid = listener.processId
  await (async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await client.connect()
    await client.query('SELECT pg_terminate_backend($1)', [pid])
    await client.end()
  })()
  await eventually(() => heard.downs === 1, 'the drop is heard', 10000)
  await eventually(() => heard.ups === 2, 'listening again', 10000)
  assert.notEqual(listener.processId, pid)
  await notify(channel, 'after')
  await eventually(() => heard.payloads.includes('after'), 'a notification over the new connection', 10000)
  assert.deepEqual(heard.payloads, ['before', 'after'])
})

test('a LISTEN link that goes silent (no FIN, no error) is noticed by the heartbeat and re-opened', async (t) => {
  // A TCP relay to PostgreSQL that can stop relaying without closing anything, as a dead network path does.
  const port = await freePort()
  const server = new URL(TEST_DATABASE_URL)
  const relayed: Array<[Socket, Socket]> = []
  const relay = createServer((inbound) => {
    const outbound = connect(Number(server.port || 5432), server.hostname)
    inbound.pipe(outbound).pipe(inbound)
    inbound.on('error', () => outbound.destroy())
    outbound.on('error', () => inbound.destroy())
    relayed.push([inbound, outbound])
  })
  await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve))
  t.after(async () => {
    for (const [a, b] of relayed) { a.destroy(); b.destroy() }
    await new Promise((resolve) => relay.close(resolve))
  })
  const url = new URL(TEST_DATABASE_URL)
  url.host = `127.0.0.1:${port}`
  const listener = new NotificationListener({ connectionString: url.toString() }, { reconnectDelayMs: 50, heartbeatMs: 300 })
  t.after(() => listener.close())
  const channel = channelName()
  const heard = recorder()
  await listener.subscribe(channel, heard.handlers)
  const [inbound, outbound] = relayed[0] as [Socket, Socket]
  inbound.unpipe(outbound)
  outbound.unpipe(inbound)
  const frozenAt = performance.now()
  const downAt = await eventually(() => heard.downs === 1, 'the silent link is noticed', 10000)
  assert.ok(downAt - frozenAt < 2000, `noticed after ${Math.round(downAt - frozenAt)} ms (heartbeat 300 ms)`)
  await eventually(() => heard.ups === 2, 'listening again over a new connection', 10000)
  await notify(channel, 'after')
  await eventually(() => heard.payloads.includes('after'), 'a notification over the new connection', 10000)
})

test('a channel name that is not a plain identifier is refused with a coded error, never put into SQL', async (t) => {
  const listener = new NotificationListener({ connectionString: TEST_DATABASE_URL })
  t.after(() => listener.close())
  await assert.rejects(listener.subscribe('x; DROP TABLE api_keys', { notification: () => {} }), { code: 'DB_LISTEN_INVALID_CHANNEL' })
  assert.equal(listener.up, false, 'nothing was opened')
})

test('subscribing fails at once when PostgreSQL cannot be reached, so a boot without a database fails fast', async () => {
  const url = new URL(TEST_DATABASE_URL)
  url.host = `127.0.0.1:${await freePort()}`
  const listener = new NotificationListener({ connectionString: url.toString() }, { reconnectDelayMs: 10 })
  await assert.rejects(listener.subscribe(channelName(), { notification: () => {} }), /ECONNREFUSED/)
  assert.equal(listener.up, false)
  await listener.close()
})

test('closing while the connection attempt hangs (a server that never answers) returns at once', async (t) => {
  const accepted: Socket[] = []
  const mute = createServer((socket) => { accepted.push(socket) })
  const port = await freePort()
  await new Promise<void>((resolve) => mute.listen(port, '127.0.0.1', resolve))
  t.after(async () => {
    for (const socket of accepted) socket.destroy()
    await new Promise((resolve) => mute.close(resolve))
  })
  const listener = new NotificationListener({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` })
  const subscribed = listener.subscribe(channelName(), { notification: () => {} })
  subscribed.catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 100))
  const started = performance.now()
  await listener.close()
  assert.ok(performance.now() - started < 1000, `close took ${Math.round(performance.now() - started)} ms`)
  await assert.rejects(subscribed)
  assert.equal(listener.up, false)
})
