import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { budgetHardCapMs, createRedisClient } from '../redis/index.js'
import { createCacheManager } from './cache-manager.js'
import { Redis } from 'ioredis'
import { startPrivateCluster, startPrivateRedis } from '../../test/helpers/private-redis.js'
import { startFaultProxy } from '../../test/helpers/fault-proxy.js'
import { collectRejections, cutOnSubscribe } from '../../test/helpers/subscribe-cut.js'
import { eventually } from '../../test/helpers/eventually.js'

test('losing the link to Redis flushes the local tier; calls keep working and recover by themselves', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'o:', breakerCooldownMs: 200 })
  t.after(() => cache.close())
  assert.ok(await cache.ready())
  for (let i = 0; i < 10; i++) await cache.getOrSet(`k${i}`, async () => i)
  assert.equal(cache.getStats().local.entries, 10)

  await redis.stop()
  await eventually(() => cache.getStats().local.entries === 0, 'the local tier is flushed', 5000)
  assert.ok(cache.getStats().local.flushes >= 1)
  // During the outage: no throw, bounded latency, the loader answers, the local tier serves.
  const started = performance.now()
  assert.equal(await cache.getOrSet('k1', async () => 'loaded'), 'loaded')
  assert.ok(performance.now() - started < 200)
  assert.equal((await cache.getOrSetWithSource('k1', async () => 'again')).source, 'local')
  await cache.set('written-during-outage', 1)
  await cache.del('k2')

  await redis.start()
  await eventually(async () => cache.getStats().redis.connected && (await cache.getOrSetWithSource('fresh', async () => 1)).source !== 'stale', 'Redis serves again', 5000)
  // A write that could not reach Redis is replayed as an invalidation (a tombstone), never as a value; once the
  // breaker has closed, writes land again and another instance reads them from Redis.
  const reader = createCacheManager(client, { prefix: 'o:', localEnabled: false })
  t.after(() => reader.close())
  await eventually(async () => {
    await cache.set('after', 'ok')
    return (await reader.get('after')) === 'ok'
  }, 'writes reach Redis again', 5000)
  assert.equal(await reader.get('written-during-outage'), undefined, 'nothing written during the outage is served from Redis')
})

test('a hung Redis (SIGSTOP) costs each call at most the budget, then nothing once the breaker opens', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'h:', redisTimeoutMs: 50, breakerThreshold: 3, breakerCooldownMs: 300 })
  t.after(() => cache.close())
  assert.ok(await cache.ready())
  await cache.getOrSet('warm', async () => 1)

  redis.pause()
  t.after(() => redis.resume())
  const latencies: number[] = []
  for (let i = 0; i < 30; i++) {
    const started = performance.now()
    assert.equal(await cache.getOrSet(`hung${i}`, async () => i), i)
    latencies.push(performance.now() - started)
  }
  assert.equal(cache.getStats().redis.breaker, 'open')
  assert.ok(Math.max(...latencies) < 250, `slowest call ${Math.max(...latencies).toFixed(0)} ms`)
  assert.ok(latencies.slice(-10).every((ms) => ms < 20), 'with the breaker open Redis is skipped')

  redis.resume()
  await eventually(async () => {
    await cache.getOrSet(`probe${Date.now()}`, async () => 0)
    return cache.getStats().redis.breaker === 'closed'
  }, 'the breaker closed', 5000)
})

test('a hung Redis still fails a cache read within its budget with the shared deadline sweep, reads before and after it answered', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 's:', localEnabled: false, redisTimeoutMs: 50, breakerThreshold: 1000 })
  t.after(() => cache.close())
  assert.ok(await cache.ready())
  await cache.set('k', 'v')
  // Reads that Redis answers leave the shared sweep between the hung ones; each hung read misses after its budget.
  for (let i = 0; i < 20; i++) assert.equal(await cache.get('k'), 'v')
  redis.pause()
  t.after(() => redis.resume())
  const reads = Array.from({ length: 5 }, async (_, i) => {
    await new Promise((resolve) => setTimeout(resolve, i * 15))
    const started = performance.now()
    // A key each: reads of one key asked together share one Redis call, and its deadline.
    const value = await cache.get(`k${i}`)
    return { value, afterMs: performance.now() - started }
  })
  for (const r of await Promise.all(reads)) {
    assert.equal(r.value, undefined)
    assert.ok(r.afterMs >= 49 && r.afterMs < budgetHardCapMs(50), `a read failed after ${r.afterMs.toFixed(0)} ms`)
  }
  assert.equal(cache.getStats().redis.timeouts, 5)
})

/** A cache reading a Redis of the test's own, which the test may pause; nothing in the background calls Redis. */
async function cacheOnPrivateRedis (t: { after: (fn: () => unknown) => void }, breakerThreshold: number) {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, {
    prefix: 'w:', localEnabled: false, redisTimeoutMs: 50, breakerThreshold, breakerCooldownMs: 60_000,
    warmEnabled: false, hotKeysMax: 0, refreshAheadRatio: 0
  })
  t.after(() => cache.close())
  assert.ok(await cache.ready())
  await cache.set('k', 'v')
  return { redis, cache }
}

test('one Redis stall under 200 concurrent reads does not open the cache breaker', async (t) => {
  const { redis, cache } = await cacheOnPrivateRedis(t, 5)
  redis.pause()
  t.after(() => { redis.resume() })
  // Each read of its own key is its own Redis call: 200 of them in flight time out together, one stall, one failure.
  // Counted one by one they opened the breaker, and the cache went without Redis for its whole cooldown after a blip.
  const reads = await Promise.all(Array.from({ length: 200 }, (_, i) => cache.get(`k${i}`)))
  assert.ok(reads.every((value) => value === undefined))
  assert.equal(cache.getStats().redis.timeouts, 200)
  assert.equal(cache.getStats().redis.breaker, 'closed')
  redis.resume()
  await eventually(async () => (await cache.get('k')) === 'v', 'read from Redis again')
})

test('a Redis that stays stalled still opens the cache breaker after threshold waves of reads', async (t) => {
  const { redis, cache } = await cacheOnPrivateRedis(t, 3)
  redis.pause()
  t.after(() => { redis.resume() })
  for (let wave = 1; wave <= 3; wave++) {
    const reads = await Promise.all(Array.from({ length: 50 }, () => cache.get('k')))
    assert.ok(reads.every((value) => value === undefined))
    assert.equal(cache.getStats().redis.breaker, wave < 3 ? 'closed' : 'open', `after wave ${wave}`)
  }
  const timeouts = cache.getStats().redis.timeouts
  assert.equal(await cache.get('k'), undefined)
  assert.equal(cache.getStats().redis.timeouts, timeouts, 'with the breaker open Redis is not waited for')
})

test('closing the cache while Redis is hung (SIGSTOP) returns within a second instead of waiting for Redis to answer', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 50 })
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'c:', redisTimeoutMs: 50, breakerCooldownMs: 300 })
  assert.ok(await cache.ready())
  await cache.getOrSet('warm', async () => 1)
  await cache.del('warm')

  redis.pause()
  await cache.del('during')
  const started = performance.now()
  const closed = await Promise.race([cache.close().then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 5000).unref())])
  const ms = performance.now() - started
  redis.resume()
  assert.ok(closed, 'close() still waits for the hung Redis after 5 s')
  assert.ok(ms < 1000, `close() took ${ms.toFixed(0)} ms`)
})

test('a connection cut while the bus\'s SUBSCRIBE is in flight raises no unhandled rejection, and the bus subscribes again and delivers invalidations once Redis is back', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const rejected = collectRejections(t)
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cut = cutOnSubscribe(client, proxy)
  const cache = createCacheManager(client, { prefix: 'cut:', breakerCooldownMs: 200 })
  t.after(() => cache.close())
  const otherClient = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
  t.after(() => otherClient.disconnect())
  const other = createCacheManager(otherClient, { prefix: 'cut:', localEnabled: false })
  t.after(() => other.close())
  assert.ok(await cache.ready(5000))
  assert.ok(await other.ready(5000))

  // Subscribed once, so a reconnect re-subscribes; the first SUBSCRIBE after the drop is cut in flight.
  cut.arm(1)
  const flushes = cache.getStats().local.flushes
  proxy.reset()
  setTimeout(() => proxy.heal(), 100)
  await eventually(() => cut.left() === 0 && cache.getStats().local.flushes > flushes, 'the SUBSCRIBE was cut', 5000)
  await eventually(() => cache.getStats().redis.connected, 'the bus is subscribed again', 5000)
  await eventually(async () => {
    await cache.getOrSet('k', async () => 'old')
    if (cache.peek('k') !== 'old') return false
    await other.set('k', 'new')
    await sleep(50)
    return cache.peek('k') === undefined
  }, 'an invalidation from another instance drops the local copy', 5000)
  assert.equal(await cache.get('k'), 'new')
  await sleep(50)
  assert.deepEqual(rejected, [])
})

test('while its subscription is refused (an ACL user without channel rights) an instance keeps local copies at most 1 s, and subscribes once it may', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const admin = createRedisClient({ url: redis.url, commandTimeoutMs: 1000 })
  t.after(() => admin.disconnect())
  await once(admin, 'ready')
  // Every key and command, no channel: SUBSCRIBE is refused on a connection that stays up.
  await admin.call('ACL', 'SETUSER', 'nochannels', 'on', 'nopass', '~*', '+@all', 'resetchannels')
  const writerClient = createRedisClient({ url: redis.url, commandTimeoutMs: 500 })
  const readerClient = createRedisClient({ url: redis.url.replace('redis://', 'redis://nochannels@'), commandTimeoutMs: 500 })
  t.after(() => { writerClient.disconnect(); readerClient.disconnect() })
  for (const c of [admin, writerClient, readerClient]) c.on('error', () => {})
  await Promise.all([once(writerClient, 'ready'), once(readerClient, 'ready')])
  const writer = createCacheManager(writerClient, { prefix: 'acl:', localEnabled: false })
  const reader = createCacheManager(readerClient, { prefix: 'acl:', localTtl: 60 })
  t.after(async () => { await writer.close(); await reader.close() })
  assert.ok(await writer.ready(5000))
  assert.equal(await reader.ready(1500), false, 'the subscription is refused')
  await writer.set('k', 'old')
  assert.equal(await reader.get('k'), 'old')
  assert.equal(reader.peek('k'), 'old', 'kept locally')
  await writer.set('k', 'new')
  // Before, the local copy was served for the local TTL (60 s): no invalidation reaches this instance.
  await sleep(1100)
  assert.equal(await reader.get('k'), 'new', 'within a second of the write')

  await admin.call('ACL', 'SETUSER', 'nochannels', 'allchannels')
  await eventually(() => reader.getStats().redis.connected, 'subscribed once the user may', 5000)
  assert.equal(await reader.get('k'), 'new')
  await writer.set('k', 'newer')
  assert.equal(reader.peek('k'), undefined, 'linked again: the write dropped the local copy before it was answered')
  assert.equal(await reader.get('k'), 'newer')
})

test('a subscriber connection that stops answering (a partition that leaves its socket half-open) is found by its PING and ended: the link is down, then back once healed', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'half:', ackTimeoutMs: 500, breakerCooldownMs: 200 })
  t.after(() => cache.close())
  assert.ok(await cache.ready(5000))
  const flushes = cache.getStats().local.flushes
  proxy.blackhole()
  const cutAt = performance.now()
  // Before, the subscriber looked subscribed for as long as TCP kept the socket (hours).
  await eventually(() => cache.getStats().local.flushes > flushes && !cache.getStats().redis.connected, 'the link is seen down', 10000)
  t.diagnostic(`link seen down ${Math.round(performance.now() - cutAt)} ms after the partition`)
  proxy.heal()
  await eventually(() => cache.getStats().redis.connected, 'subscribed again once healed', 15000)
})

test('a cluster\'s subscriber connection that stops answering is found by a PING down that connection and the link ended: down, then back once the node answers again', async (t) => {
  const cluster = await startPrivateCluster()
  t.after(() => cluster.destroy())
  const client = createRedisClient({ url: cluster.url, cluster: true, commandTimeoutMs: 500 })
  client.on('error', () => {})
  await once(client, 'ready')
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'cluster-half:', ackTimeoutMs: 500, breakerCooldownMs: 200 })
  t.after(() => cache.close())
  assert.ok(await cache.ready(10000))
  // The node whose connection carries the bus's two subscriptions.
  let subscribedOn: number | undefined
  for (const port of cluster.ports) {
    const node = new Redis({ port, lazyConnect: true })
    await node.connect()
    const list = String(await node.call('CLIENT', 'LIST'))
    node.disconnect()
    if (list.split('\n').some((line) => line.includes('chassis-cache-bus') && / sub=2 /.test(line))) subscribedOn = port
  }
  assert.ok(subscribedOn !== undefined, 'the bus subscribes on one of the masters')
  const flushes = cache.getStats().local.flushes
  // The node stops answering its clients (the subscriber's PING among them) without closing a connection, as a
  // partition that leaves the socket half-open looks from here.
  const admin = new Redis({ port: subscribedOn, lazyConnect: true })
  await admin.connect()
  await admin.call('CLIENT', 'PAUSE', '8000', 'ALL')
  admin.disconnect()
  const pausedAt = performance.now()
  // Before, a Cluster's bus had no PING check: it looked subscribed while no invalidation could reach it.
  await eventually(() => cache.getStats().local.flushes > flushes, 'the link is seen down', 8000)
  t.diagnostic(`link seen down ${Math.round(performance.now() - pausedAt)} ms after the node stopped answering`)
  await eventually(() => cache.getStats().redis.connected, 'subscribed again once the node answers', 30000)
})

test('while Redis hangs, an invalidation stops this instance serving its old copies at once, by key, by tag and by pattern, not once Redis answers', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => { redis.resume(); return redis.destroy() })
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 3000 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cache = createCacheManager(client, { prefix: 'hang:', redisTimeoutMs: 3000, localTtl: 60 })
  t.after(() => cache.close())
  assert.ok(await cache.ready(5000))
  await cache.set('by-key', 1)
  await cache.set('by-tag', 2, undefined, { tags: ['list'] })
  await cache.set('by-pattern:1', 3)
  for (const key of ['by-key', 'by-tag', 'by-pattern:1']) assert.notEqual(cache.peek(key), undefined, key)
  redis.pause()
  // Each waits for the hung Redis (its budget, 3 s); this instance's copies must go before that.
  const pending = [cache.invalidate({ keys: ['by-key'] }), cache.invalidateTags(['list']), cache.deletePattern('by-pattern:*')]
  assert.equal(cache.peek('by-key'), undefined, 'by key')
  assert.equal(cache.peek('by-tag'), undefined, 'by tag: before, only once Redis counted the tag on')
  assert.equal(cache.peek('by-pattern:1'), undefined, 'by pattern')
  redis.resume()
  await Promise.all(pending)
})
