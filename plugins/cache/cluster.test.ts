import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import calculateSlot from 'cluster-key-slot'
import { Cluster } from 'ioredis'
import { createRedisClient, duplicateClient, type RedisClient } from '../redis/index.js'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { cachePattern } from './glob.js'
import { startPrivateCluster, type PrivateCluster } from '../../test/helpers/private-redis.js'

let cluster: PrivateCluster
const clients: RedisClient[] = []
let a: CacheManager
let b: CacheManager

before(async () => {
  cluster = await startPrivateCluster()
  for (let i = 0; i < 2; i++) {
    const client = createRedisClient({ url: cluster.url, cluster: true, commandTimeoutMs: 500 })
    await new Promise((resolve) => client.once('ready', resolve))
    clients.push(client)
  }
  a = createCacheManager(clients[0], { prefix: 'c:', redisTimeoutMs: 500 })
  b = createCacheManager(clients[1], { prefix: 'c:', redisTimeoutMs: 500 })
  assert.ok(await a.ready(5000))
  assert.ok(await b.ready(5000))
})

after(async () => {
  await a?.close()
  await b?.close()
  for (const c of clients) c.disconnect()
  await cluster?.destroy()
})

test('against a three-master cluster: get, set, mget and mset group keys by slot', async () => {
  const entries = Array.from({ length: 300 }, (_, i) => [`k:${i}`, { i }] as [string, unknown])
  await a.mset(entries, 60)
  const values = await b.mget(entries.map(([k]) => k))
  assert.deepEqual(values, entries.map(([, v]) => v))
  assert.ok(b.getStats().redis.roundTrips > 1, 'one script call per slot group')
  assert.deepEqual(await b.getOrSetWithSource('k:5', async () => 'db'), { value: { i: 5 }, source: 'local' })
})

test('pattern deletion scans every master; tags and coherence work across the cluster', async () => {
  await a.mset(Array.from({ length: 200 }, (_, i) => [`p:${i}`, i] as [string, unknown]))
  assert.equal(await b.get('p:150'), 150)
  await a.deletePattern(cachePattern`p:*`)
  assert.equal(await b.get('p:150'), undefined)
  for (const node of (clients[0] as import('ioredis').Cluster).nodes('master')) {
    assert.equal((await node.keys('c:p:*')).length, 0)
  }
  await b.getOrSet('tagged', async () => 'v1', { tags: ['t'] })
  await a.invalidateTags(['t'])
  assert.equal(await b.getOrSet('tagged', async () => 'v2', { tags: ['t'] }), 'v2')
  await b.getOrSet('x', async () => 'old')
  await a.set('x', 'new')
  assert.equal(await b.get('x'), 'new')
})

test('a cluster client with a key prefix: writes, reads and pattern deletion group keys by the slots of the prefixed keys Redis holds', async (t) => {
  const url = new URL(cluster.url)
  // Handed over by the app, as `createCacheManager` takes any client: the prefix moves every key's slot.
  const prefixed = new Cluster([{ host: url.hostname, port: Number(url.port) }], { keyPrefix: 'app:', enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 0 } })
  await new Promise((resolve) => prefixed.once('ready', resolve))
  const cache = createCacheManager(prefixed, { prefix: 'kp:', redisTimeoutMs: 500, localEnabled: false })
  t.after(async () => { await cache.close(); prefixed.disconnect() })
  assert.ok(await cache.ready(5000))
  // Keys whose slot is one without the prefix and many with it, beside 200 of any slot.
  const sameSlot: string[] = []
  for (let n = 0; sameSlot.length < 6; n++) if (calculateSlot(`kp:q:s${n}`) === calculateSlot('kp:q:s0')) sameSlot.push(`q:s${n}`)
  assert.ok(new Set(sameSlot.map((k) => calculateSlot(`app:kp:${k}`))).size > 1)
  const entries = [...sameSlot, ...Array.from({ length: 200 }, (_, i) => `q:${i}`)].map((k, i) => [k, { i }] as [string, unknown])
  await cache.mset(entries, 60)
  assert.deepEqual(await cache.mget(entries.map(([k]) => k)), entries.map(([, v]) => v))
  let held = 0
  for (const node of prefixed.nodes('master')) held += (await node.keys('app:kp:q:*')).length
  assert.equal(held, entries.length, 'every key stored under the prefix')
  await cache.deletePattern(cachePattern`q:*`)
  assert.deepEqual(await cache.mget(['q:1', 'q:150', ...sameSlot]), Array.from({ length: 2 + sameSlot.length }, () => undefined))
  for (const node of prefixed.nodes('master')) assert.deepEqual(await node.keys('app:kp:q:*'), [])
})

test('the invalidation bus of a cluster client subscribes on a connection of its own options: named chassis-cache-bus, with an offline queue', async () => {
  // Both caches' buses subscribe to their channel and their ack channel: two subscriptions each.
  const subscribers: string[] = []
  for (const node of (clients[0] as Cluster).nodes('master')) {
    subscribers.push(...String(await node.call('CLIENT', 'LIST')).split('\n').filter((l) => / sub=2 /.test(l)).map((l) => /name=(\S*)/.exec(l)?.[1] ?? ''))
  }
  assert.deepEqual(subscribers, ['ioredis-cluster(subscriber):chassis-cache-bus', 'ioredis-cluster(subscriber):chassis-cache-bus'])
  const duplicate = duplicateClient(clients[0] as Cluster, { enableOfflineQueue: true, commandTimeout: undefined, connectionName: 'named', autoResubscribe: false }) as Cluster
  try {
    assert.equal(duplicate.options.enableOfflineQueue, true)
    assert.equal(duplicate.options.redisOptions?.connectionName, 'named')
    assert.equal(duplicate.options.redisOptions?.commandTimeout, undefined)
    assert.equal(duplicate.options.redisOptions?.autoResubscribe, false)
    assert.equal(duplicate.options.redisOptions?.connectTimeout, 2000, 'the rest of the original options')
    assert.equal((clients[0] as Cluster).options.enableOfflineQueue, false, 'the original keeps its own')
  } finally {
    duplicate.disconnect()
  }
})
