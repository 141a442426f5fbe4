import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { uniqueName } from '../../test/helpers/database.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: Redis[] = []
const managers: CacheManager[] = []
const peers: ChildProcess[] = []

after(async () => {
  for (const peer of peers) peer.kill()
  await Promise.all(managers.map((m) => m.close()))
  await Promise.all(clients.map((c) => c.quit()))
})

/**
 * Another instance of the cache in a process of its own, reduced to its part of the bus: it acknowledges every
 * invalidation `ackAfterMs` after it arrives (never, for -1), as a busy instance would.
 */
async function peer (channel: string, ackAfterMs: number): Promise<void> {
  const script = `
    const { Redis } = require('ioredis')
    const sub = new Redis(process.env.URL), pub = new Redis(process.env.URL)
    const ackAfter = Number(process.env.ACK_AFTER_MS)
    sub.on('message', (_channel, raw) => {
      const m = JSON.parse(raw)
      if (ackAfter >= 0) setTimeout(() => { pub.publish(process.env.CHANNEL + ':ack:' + m.src, m.id) }, ackAfter)
    })
    sub.subscribe(process.env.CHANNEL).then(() => console.log('ready'))`
  const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, URL: REDIS_URL, CHANNEL: channel, ACK_AFTER_MS: String(ackAfterMs) }, stdio: ['ignore', 'pipe', 'inherit'] })
  peers.push(child)
  await once(child.stdout, 'data')
}

async function writer (ackTimeoutMs: number): Promise<{ cache: CacheManager, channel: string }> {
  const prefix = `${uniqueName('ack')}:`
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  await once(client, 'ready')
  clients.push(client)
  const cache = createCacheManager(client, { prefix, ttl: 60, ackTimeoutMs })
  managers.push(cache)
  assert.ok(await cache.ready())
  return { cache, channel: `${prefix}__invalidate` }
}

/**
 * Keeps this process's event loop busy for `ms`, `afterMs` from now, as a long GC pause or a CPU-bound request would.
 * In the check phase: the loop's next turn then runs its timers, the expired ack timer among them, before it reads
 * the sockets (from a timer callback, libuv's clock would not move on until the sockets were read).
 */
function blockLater (afterMs: number, ms: number): void {
  setTimeout(() => {
    setImmediate(() => {
      const end = performance.now() + ms
      while (performance.now() < end) { /* busy */ }
    })
  }, afterMs)
}

test('an acknowledgement already waiting in the socket when the writer\'s late ack timer fires counts as acknowledged, not as a timeout (the writer\'s loop blocked past CACHE_ACK_TIMEOUT_MS)', async () => {
  const { cache, channel } = await writer(100)
  await peer(channel, 30)
  for (let round = 0; round < 5; round++) {
    const written = cache.set(`k${round}`, round)
    // The peer acknowledges 30 ms after the message, while this loop is blocked; the 100 ms timer expires in it too.
    blockLater(10, 300)
    await written
  }
  assert.equal(cache.getStats().invalidations.published, 5)
  assert.equal(cache.getStats().invalidations.ackTimeouts, 0, 'every acknowledgement was in the socket when the timer fired')
})

test('a peer that never acknowledges still times the write out, within ten times CACHE_ACK_TIMEOUT_MS however late the writer runs', async () => {
  const { cache, channel } = await writer(100)
  await peer(channel, -1)
  const started = performance.now()
  await cache.set('k', 1)
  const plain = performance.now() - started
  assert.equal(cache.getStats().invalidations.ackTimeouts, 1)
  // At least the setting; on a busy machine the process itself may run late, and the wait with it, up to the cap.
  assert.ok(plain >= 95 && plain < 1000 + 200, `a write waited ${Math.round(plain)} ms for its acknowledgement`)
  const lateStart = performance.now()
  const written = cache.set('k', 2)
  blockLater(10, 300)
  await written
  const late = performance.now() - lateStart
  assert.equal(cache.getStats().invalidations.ackTimeouts, 2)
  assert.ok(late < 1000 + 300 + 200, `a late writer waited ${Math.round(late)} ms, past the hard cap`)
})
