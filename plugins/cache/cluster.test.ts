import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRedisClient, type RedisClient } from '../redis/index.js'
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
