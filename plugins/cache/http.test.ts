import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { Redis } from 'ioredis'
import { createCacheManager, type CacheManager } from './cache-manager.js'
import { sendCached } from './http.js'
import { uniqueName } from '../../test/helpers/database.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const admin = new Redis(REDIS_URL)
const prefixes: string[] = []

after(async () => {
  for (const prefix of prefixes) {
    const keys = await admin.keys(`${prefix}*`)
    if (keys.length > 0) await admin.unlink(...keys)
  }
  await admin.quit()
})

/** A route whose response schema leaves out `secret`, cached by sendCached with a loader that captures no request. */
async function itemApp (t: { after: (fn: () => Promise<void>) => void }, onReply?: (reply: FastifyReply) => void): Promise<{ app: FastifyInstance, cache: CacheManager }> {
  const prefix = `${uniqueName('http')}:`
  prefixes.push(prefix)
  const redis = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  await new Promise((resolve) => redis.once('ready', resolve))
  const cache = createCacheManager(redis, { prefix, ttl: 2, grace: 0, refreshAheadRatio: 0.5, hotKeysIntervalMs: 100 })
  assert.ok(await cache.ready(5000))
  const app = Fastify()
  app.get('/item', { schema: { response: { 200: { type: 'object', properties: { name: { type: 'string' } } } } } }, async (_request, reply) => {
    onReply?.(reply)
    return sendCached(cache, _request, reply, { key: 'item' }, async () => ({ name: 'n', secret: 's' }))
  })
  await app.ready()
  t.after(async () => {
    await app.close()
    await cache.close()
    await redis.quit()
  })
  return { app, cache }
}

test('a background reload serializes through the route\'s 200 schema even when the request that noted its loader was answered 304', async (t) => {
  const { app, cache } = await itemApp(t)
  const first = await app.inject({ url: '/item' })
  assert.equal(first.body, '{"name":"n"}')
  const etag = first.headers.etag as string
  await cache.flushHotKeys()
  await sleep(2100)
  // The entry expired: this revalidation misses, runs the loader (which is noted for refresh-ahead) and gets 304.
  const revalidated = await app.inject({ url: '/item', headers: { 'if-none-match': etag } })
  assert.equal(revalidated.statusCode, 304)
  assert.equal(revalidated.headers['x-cache'], 'MISS')
  await cache.flushHotKeys()
  const started = Date.now()
  while (cache.getStats().warming.refreshes === 0 && Date.now() - started < 3000) {
    await app.inject({ url: '/item' })
    await sleep(50)
  }
  assert.ok(cache.getStats().warming.refreshes >= 1, 'the entry was reloaded in the background')
  await sleep(50)
  const after = await app.inject({ url: '/item' })
  assert.equal(after.body, '{"name":"n"}', 'the reloaded body went through the response schema')
  assert.equal(after.headers.etag, etag)
})

test('a loader remembered for refresh-ahead keeps neither its request\'s reply nor its request alive', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const replies: Array<WeakRef<object>> = []
  const { app, cache } = await itemApp(t, (reply) => { replies.push(new WeakRef(reply), new WeakRef(reply.request)) })
  for (let i = 0; i < 3; i++) {
    await cache.del('item')
    assert.equal((await app.inject({ url: '/item' })).headers['x-cache'], 'MISS')
  }
  await cache.flushHotKeys()
  for (let i = 0; i < 5 && replies.some((r) => r.deref() !== undefined); i++) {
    await sleep(20)
    gc()
  }
  assert.deepEqual(replies.map((r) => r.deref() === undefined), replies.map(() => true), 'every reply and request was collected')
})

test('a local hit is answered before sendCached returns, and returns no promise for the handler to wait on', async (t) => {
  const prefix = `${uniqueName('http-sync')}:`
  prefixes.push(prefix)
  const redis = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  await new Promise((resolve) => redis.once('ready', resolve))
  const cache = createCacheManager(redis, { prefix, ttl: 60 })
  assert.ok(await cache.ready(5000))
  const app = Fastify()
  const seen: Array<{ promise: boolean, sent: boolean }> = []
  // Not async: a hit must need nothing from Fastify after the handler returns.
  app.get('/item', (request, reply) => {
    const returned = sendCached(cache, request, reply, { key: 'item' }, async () => ({ name: 'n' }))
    seen.push({ promise: returned instanceof Promise, sent: reply.sent })
    return returned
  })
  t.after(async () => {
    await app.close()
    await cache.close()
    await redis.quit()
  })
  const miss = await app.inject({ url: '/item' })
  const hit = await app.inject({ url: '/item' })
  assert.equal(miss.headers['x-cache'], 'MISS')
  assert.equal(hit.headers['x-cache'], 'HIT-LOCAL')
  assert.equal(hit.body, miss.body)
  assert.deepEqual(seen, [{ promise: true, sent: false }, { promise: false, sent: true }])
  const notModified = await app.inject({ url: '/item', headers: { 'if-none-match': String(hit.headers.etag) } })
  assert.equal(notModified.statusCode, 304)
  assert.deepEqual(seen[2], { promise: false, sent: true })
})

test('a cached answer is not sent a second time (ERR_HTTP_HEADERS_SENT) while an async onSend hook is still running', async (t) => {
  const prefix = `${uniqueName('http')}:`
  prefixes.push(prefix)
  const redis = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  await new Promise((resolve) => redis.once('ready', resolve))
  const cache = createCacheManager(redis, { prefix, ttl: 2, grace: 0 })
  assert.ok(await cache.ready(5000))
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => lines.push(line) } } })
  // As the db-pool's read-your-writes hook does with replicas: the reply is not sent when the handler returns.
  app.addHook('onSend', async () => { await sleep(1) })
  app.get('/returned', (request, reply) => sendCached(cache, request, reply, { key: 'returned' }, async () => ({ name: 'r' })))
  app.get('/awaited', async (request, reply) => {
    await sendCached(cache, request, reply, { key: 'awaited' }, async () => ({ name: 'a' }))
  })
  await app.ready()
  t.after(async () => {
    await app.close()
    await cache.close()
    await redis.quit()
  })
  for (const [url, name] of [['/returned', 'r'], ['/awaited', 'a']] as const) {
    for (const source of ['MISS', 'HIT-LOCAL']) {
      const response = await app.inject({ url })
      assert.equal(response.statusCode, 200)
      assert.equal(response.headers['x-cache'], source)
      assert.equal(response.body, `{"name":"${name}"}`)
    }
  }
  await sleep(20)
  assert.deepEqual(lines, [], 'nothing was sent twice')
})
