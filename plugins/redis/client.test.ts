import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { closeRedisClient, createRedisClient, isCluster } from './client.js'
import { startPrivateCluster, startPrivateRedis } from '../../test/helpers/private-redis.js'

test('invalid Redis client options throw one coded error naming each problem, never the URL', () => {
  assert.throws(() => createRedisClient({ url: 'http://user:hunter2@127.0.0.1:6379', commandTimeoutMs: -1 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'REDIS_INVALID_OPTIONS')
    assert.match(e.message, /url must be a redis:\/\/ or rediss:\/\/ URL/)
    assert.match(e.message, /commandTimeoutMs must be a positive number/)
    assert.doesNotMatch(e.message, /hunter2/)
    return true
  })
  assert.throws(() => createRedisClient({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 0 }), /commandTimeoutMs must be a positive number/)
  // Stretched ten times, and the backstop twice that, a larger budget is past what a Node timer holds (fired at once).
  assert.throws(() => createRedisClient({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 107374183 }), /commandTimeoutMs must be a positive number up to 107374182/)
})

test('closing a client of a hung Redis (SIGSTOP) releases its socket within a second, so a CLI exits instead of lingering', async (t) => {
  const redis = await startPrivateRedis()
  t.after(async () => {
    redis.resume()
    await redis.destroy()
  })
  const client = createRedisClient({ url: redis.url })
  client.on('error', () => {})
  await once(client, 'ready')
  const socket = (client as unknown as { stream: NodeJS.EventEmitter }).stream
  redis.pause()
  const started = performance.now()
  const released = once(socket, 'close').then(() => performance.now() - started)
  await closeRedisClient(client)
  const ms = await Promise.race([released, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 5000).unref())])
  assert.ok(ms < 1000, `the socket stayed open ${ms.toFixed(0)} ms after close (it keeps the process alive)`)
})

test('closing a client of a Redis that hung before it answered (never ready) is done at once, not after waiting 500 ms for QUIT', async (t) => {
  const redis = await startPrivateRedis()
  t.after(async () => {
    redis.resume()
    await redis.destroy()
  })
  redis.pause()
  // The cache's invalidation link queues offline: its QUIT would wait behind a ready check that never ends.
  const plain = createRedisClient({ url: redis.url })
  const queueing = plain.duplicate({ enableOfflineQueue: true } as never)
  t.after(() => { plain.disconnect(); queueing.disconnect() })
  for (const client of [plain, queueing]) {
    client.on('error', () => {})
    await once(client, 'connect')
    assert.equal(client.status, 'connect', 'connected, its ready check unanswered')
    const started = performance.now()
    await closeRedisClient(client)
    const ms = performance.now() - started
    assert.ok(ms < 200, `closed in ${ms.toFixed(0)} ms`)
  }
})

test('the client\'s name option is the connection name Redis lists (CLIENT LIST), so an operator can tell whose it is', async (t) => {
  const client = createRedisClient({ url: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', name: `named-client-${process.pid}` })
  t.after(() => closeRedisClient(client))
  await once(client, 'ready')
  const list = String(await client.call('CLIENT', 'LIST'))
  assert.ok(list.split('\n').some((line) => line.includes(`name=named-client-${process.pid} `)), 'the connection is listed by its name')
})

test('a cluster client keeps what its seed URL says: ?keyPrefix= prefixes its keys, rediss:// asks for TLS on every node; a database or another parameter is refused by name', async (t) => {
  for (const [url, problem] of [['redis://:hunter2@127.0.0.1:1/2', /a cluster has database 0 only/], ['redis://:hunter2@127.0.0.1:1/?family=6', /the url's "family" parameter is not taken by a cluster client/]] as const) {
    assert.throws(() => createRedisClient({ url, cluster: true }), (e: Error & { code: string }) => {
      assert.equal(e.code, 'REDIS_INVALID_OPTIONS')
      assert.match(e.message, problem)
      assert.doesNotMatch(e.message, /hunter2/)
      return true
    })
  }
  // Before, a rediss:// seed gave the nodes no TLS option: plain text, the password included.
  const tls = createRedisClient({ url: 'rediss://:hunter2@127.0.0.1:1', cluster: true })
  tls.on('error', () => {})
  assert.ok(isCluster(tls))
  assert.deepEqual(tls.options.redisOptions?.tls, {})
  assert.equal(typeof tls.options.dnsLookup, 'function', 'node names kept for the certificate check')
  tls.disconnect()

  const cluster = await startPrivateCluster()
  t.after(() => cluster.destroy())
  const prefixed = createRedisClient({ url: `${cluster.url}/?keyPrefix=tenant-a:`, cluster: true, commandTimeoutMs: 2000 })
  const plain = createRedisClient({ url: cluster.url, cluster: true, commandTimeoutMs: 2000 })
  t.after(() => { prefixed.disconnect(); plain.disconnect() })
  await Promise.all([once(prefixed, 'ready'), once(plain, 'ready')])
  await prefixed.set('k', 'v')
  assert.equal(await plain.get('tenant-a:k'), 'v')
  assert.equal(await plain.get('k'), null)
})
