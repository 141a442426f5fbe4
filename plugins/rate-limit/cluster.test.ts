import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRedisClient, type RedisClient } from '../redis/index.js'
import { RateLimiter } from './rate-limiter.js'
import { startPrivateCluster, type PrivateCluster } from '../../test/helpers/private-redis.js'

let cluster: PrivateCluster
let client: RedisClient

before(async () => {
  cluster = await startPrivateCluster()
  client = createRedisClient({ url: cluster.url, cluster: true, commandTimeoutMs: 1000 })
  await new Promise((resolve) => client.once('ready', resolve))
})

after(async () => {
  client?.disconnect()
  await cluster?.destroy()
})

test('against a three-master cluster: each decision goes to its identity\'s slot, exact per identity', async () => {
  const limiter = new RateLimiter(client, { prefix: 'rl:', timeoutMs: 1000 })
  const perMinute = { name: 'minute', limit: 5, windowMs: 60000 }
  const burst = { name: 'burst', limit: 3, windowMs: 1000 }
  const identities = Array.from({ length: 30 }, (_, i) => `client-${i}`)
  const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => {
    const id = identities[i % identities.length] as string
    return limiter.check(id, [perMinute]).then((d) => ({ id, d }))
  }))
  for (const id of identities) {
    const mine = decisions.filter((x) => x.id === id)
    assert.equal(mine.filter((x) => x.d.allowed).length, 5, id)
    assert.ok(mine.every((x) => x.d.source === 'store' || x.d.source === 'fast-path'), 'decided by the cluster, not the fallback')
  }
  // Two policies of one request share the identity's slot and are decided together.
  const layered = await Promise.all(Array.from({ length: 6 }, () => limiter.check('layered', [{ ...perMinute, limit: 100 }, burst])))
  assert.equal(layered.filter((d) => d.allowed).length, 3)
  assert.equal(await limiter.getRemainingRequests('layered', { ...perMinute, limit: 100 }), 97)
  assert.equal(limiter.getStats().breaker, 'closed')
})
