import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import websocket from '@fastify/websocket'
import WebSocket from 'ws'
import { buildService, chassisConfigFragment, composeSchema, loadConfig, type ChassisConfig } from '@lead-chassis/plugins/chassis'

// The orchestrator's event stream is a WebSocket: an upgrade is never answered through Fastify's reply, so with one
// request line per request (written when it is answered) a connection would leave no line at all.
test('a WebSocket connection writes its request line when it arrives, since it is never answered through Fastify', async (t) => {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const app = await buildService({
    name: 'test',
    config,
    logger: { stream },
    routes: [async (a) => {
      await a.register(websocket)
      a.get('/events', { websocket: true }, (socket) => { socket.send('hello') })
    }]
  })
  t.after(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const client = new WebSocket(`ws://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/events?name=AnnLee`)
  await once(client, 'message')
  client.close()
  await once(client, 'close')
  await sleep(50)
  const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
  const line = lines.find((l) => (l.req as { url?: string } | undefined)?.url?.startsWith('/events') === true)
  assert.equal(line?.msg, 'incoming request', text)
  assert.equal((line?.req as { url: string }).url, '/events?[REDACTED]=[REDACTED]')
  assert.equal(typeof line?.reqId, 'string')
})
