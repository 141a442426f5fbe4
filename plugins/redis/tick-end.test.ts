import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Redis } from 'ioredis'
import { createRedisClient, holdUntilTickEnd } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: Redis[] = []
after(() => { for (const c of clients) c.disconnect() })

async function connected (): Promise<Redis> {
  const client = createRedisClient({ url: REDIS_URL }) as Redis
  client.on('error', () => {})
  clients.push(client)
  await new Promise((resolve) => client.once('ready', resolve))
  return client
}

test('a socket whose release throws at the end of a tick is closed and its client reconnects, and the other sockets held in that tick still send their writes', async () => {
  const a = await connected()
  const b = await connected()
  const streamA = a.stream
  const uncork = streamA.uncork.bind(streamA)
  let armed = true
  streamA.uncork = () => {
    uncork()
    if (armed) {
      armed = false
      throw new Error('uncork failed')
    }
  }
  // Both sockets held in one tick, a's first: its failure must not leave b's commands corked for good. a's commands
  // fail when its socket is closed: settled here, not left unhandled.
  const first = a.ping().catch((error: unknown) => error)
  holdUntilTickEnd(streamA)
  const onA = a.echo('a').catch((error: unknown) => error)
  const onB = b.ping()
  holdUntilTickEnd(b.stream)
  const heldOnB = b.echo('b')
  await first
  assert.deepEqual(await Promise.all([onB, heldOnB]), ['PONG', 'b'])
  assert.equal(b.stream.writableCorked, 0)
  // a's socket was destroyed: what it had in flight fails or is retried, and the client answers again once back.
  await onA
  assert.equal(streamA.destroyed, true)
  for (let i = 0; i < 100 && (a.status !== 'ready' || a.stream === streamA); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.notEqual(a.stream, streamA)
  assert.equal(await a.echo('again'), 'again')
  assert.equal(a.stream.writableCorked, 0)
})
