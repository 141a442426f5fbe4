import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { isDeepStrictEqual } from 'node:util'
import { Command, Redis } from 'ioredis'
import { createCacheManager } from './cache-manager.js'
import { encode } from './codec.js'
import { CircuitBreaker, createRedisClient, withBudget } from '../redis/index.js'
import { blockEventLoop } from '../../test/helpers/event-loop.js'
import { startFaultProxy, startLatencyProxyThread } from '../../test/helpers/fault-proxy.js'
import { oldGenerationGrowthKb } from '../../test/helpers/old-generation.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'

// A server of the test's own: INFO commandstats counts every client's commands.
const server = await startPrivateRedis()
after(() => server.destroy())

async function calls (client: Redis, command: string): Promise<number> {
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0)
}

async function counts (client: Redis): Promise<Record<'get' | 'mget' | 'pttl' | 'scripts', number>> {
  return {
    get: await calls(client, 'get'),
    mget: await calls(client, 'mget'),
    pttl: await calls(client, 'pttl'),
    scripts: await calls(client, 'evalsha') + await calls(client, 'eval')
  }
}

const page = { data: Array.from({ length: 20 }, (_, i) => ({ id: i, name: 'x'.repeat(300) })), nextCursor: null }

test('a Redis hit is a single GET: no PTTL beside it and no Lua script, which costs Redis ~20 µs per 8 KB', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'read:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  await cache.set('page', page)
  const before = await counts(client)
  for (let i = 0; i < 50; i++) assert.deepEqual(await cache.getOrSetWithSource('page', async () => 'not called'), { value: page, source: 'redis' })
  // cache.get reads one key on a path of its own.
  for (let i = 0; i < 50; i++) assert.deepEqual(await cache.get('page'), page)
  const after = await counts(client)
  assert.deepEqual({ get: after.get - before.get, pttl: after.pttl - before.pttl, scripts: after.scripts - before.scripts }, { get: 100, pttl: 0, scripts: 0 })
})

test('gets of one key asked together share one GET and one decode: 64 reads of a hot page with the local tier off cost one round trip, each counted a hit (a miss)', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'read-shared:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  await cache.set('page', page)
  const before = await counts(client)
  const stats = cache.getStats()
  const values = await Promise.all(Array.from({ length: 64 }, () => cache.get('page')))
  for (const value of values) assert.deepEqual(value, page)
  const after = await counts(client)
  // Before, each read was a GET of its own and a JSON.parse of the page's 8 KB: 64 of both.
  assert.equal(after.get - before.get, 1)
  assert.equal(cache.getStats().redis.hits - stats.redis.hits, 64)
  assert.equal(cache.getStats().coalescedWaits - stats.coalescedWaits, 63)
  // Read one after the other, each read is its own.
  for (let i = 0; i < 3; i++) assert.deepEqual(await cache.get('page'), page)
  assert.equal((await counts(client)).get - after.get, 3)
  // A shared miss is each caller's miss.
  const missed = cache.getStats()
  const absent = await Promise.all(Array.from({ length: 64 }, () => cache.get('absent')))
  assert.deepEqual(new Set(absent), new Set([undefined]))
  assert.equal(cache.getStats().redis.misses - missed.redis.misses, 64)
  assert.equal(cache.getStats().redis.hits - missed.redis.hits, 0)
})

test('a get that finds the read of its key in flight for half the Redis budget or more reads for itself: a caller that joins a read keeps at least half of its own budget', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 5000 }) as Redis
  client.on('error', () => {})
  const cache = createCacheManager(client, { prefix: 'read-age:', localEnabled: false, redisTimeoutMs: 200, breakerThreshold: 1000 })
  t.after(async () => { redis.resume(); await cache.close(); client.disconnect() })
  assert.ok(await cache.ready())
  await cache.set('k', 'v')
  const { timeouts, hits, misses } = cache.getStats().redis
  redis.pause()
  const timed = async (delayMs: number): Promise<{ value: unknown, afterMs: number }> => {
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    const started = performance.now()
    const value = await cache.get('k')
    return { value, afterMs: performance.now() - started }
  }
  // The first read at 0; one asked at 30 ms joins it; one asked at 130 ms (past half of 200) reads for itself.
  const [first, joined, late] = await Promise.all([timed(0), timed(30), timed(130)])
  for (const r of [first, joined, late]) assert.equal(r.value, undefined)
  assert.ok(joined.afterMs >= 100, `the joined read missed after ${joined.afterMs.toFixed(0)} ms, less than half its budget`)
  // Before, it joined too, and missed some 70 ms after it asked.
  assert.ok(late.afterMs >= 190, `the late read missed after ${late.afterMs.toFixed(0)} ms, not its own budget`)
  assert.equal(cache.getStats().redis.timeouts - timeouts, 2, 'two reads of Redis: the first (shared) and the late one')
  // A read Redis did not answer is neither a hit nor a miss, for the caller that joined it as for the one that asked.
  assert.deepEqual([cache.getStats().redis.hits - hits, cache.getStats().redis.misses - misses], [0, 0])
})

for (const change of ['delete', 'set'] as const) {
  test(`a get asked after a ${change} of its key began does not share a read of the key begun before it, and is not answered the old value`, async (t) => {
    const redis = await startPrivateRedis()
    t.after(() => redis.destroy())
    const client = createRedisClient({ url: redis.url, commandTimeoutMs: 5000 }) as Redis
    const cache = createCacheManager(client, { prefix: `read-after-${change}:`, localEnabled: false, redisTimeoutMs: 5000 })
    t.after(async () => { redis.resume(); await cache.close(); client.disconnect() })
    assert.ok(await cache.ready())
    await cache.set('k', 'old')
    // Paused, Redis answers nothing until resumed, then answers in the order the commands were sent.
    redis.pause()
    const before = cache.get('k')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const changed = change === 'delete' ? cache.del('k') : cache.set('k', 'new')
    const afterChange = cache.get('k')
    await new Promise((resolve) => setTimeout(resolve, 20))
    redis.resume()
    assert.equal(await before, 'old', 'the read sent before the change sees the old value')
    await changed
    const now = change === 'delete' ? undefined : 'new'
    // Before, it joined the read in flight and was answered 'old' after the change had begun.
    assert.equal(await afterChange, now)
    assert.equal(await cache.get('k'), now)
  })
}

test('gets of a hot key share the read in flight while other keys are written: a steady stream of writes elsewhere does not make each get a read of its own', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 5000 }) as Redis
  const cache = createCacheManager(client, { prefix: 'read-shared-writes:', localEnabled: false, redisTimeoutMs: 5000 })
  t.after(async () => { redis.resume(); await cache.close(); client.disconnect() })
  assert.ok(await cache.ready())
  await cache.set('hot', page)
  const before = await counts(client)
  const coalesced = cache.getStats().coalescedWaits
  // Paused, Redis answers nothing until resumed: the first get's read stays in flight while the others are asked.
  redis.pause()
  const gets = [cache.get('hot')]
  const writes: Array<Promise<void>> = []
  for (let i = 0; i < 10; i++) {
    writes.push(cache.set(`other:${i}`, i), cache.del(`gone:${i}`))
    gets.push(cache.get('hot'))
  }
  redis.resume()
  for (const value of await Promise.all(gets)) assert.deepEqual(value, page)
  await Promise.all(writes)
  // Before, each write moved the one change number every read was stamped with: 11 GETs for 11 gets.
  assert.equal((await counts(client)).get - before.get, 1)
  assert.equal(cache.getStats().coalescedWaits - coalesced, 10)
})

test('a get asked after a tag was invalidated does not share a read begun before: the key may carry that tag', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 5000 }) as Redis
  const cache = createCacheManager(client, { prefix: 'read-after-tag:', localEnabled: false, redisTimeoutMs: 5000 })
  t.after(async () => { redis.resume(); await cache.close(); client.disconnect() })
  assert.ok(await cache.ready())
  await cache.set('k', 'old', undefined, { tags: ['t'] })
  const gets = (await counts(client)).get
  redis.pause()
  const before = cache.get('k')
  await new Promise((resolve) => setTimeout(resolve, 20))
  const invalidated = cache.invalidateTags(['t'])
  const afterTag = cache.get('k')
  await new Promise((resolve) => setTimeout(resolve, 20))
  redis.resume()
  await Promise.all([before, invalidated])
  assert.equal(await afterTag, undefined, 'the get asked after the tag\'s invalidation began misses')
  // A read of its own: which tags a key carries is known only once it is read.
  assert.equal((await counts(client)).get - gets, 2)
})

test('an mget of Redis hits is a single MGET: no script asking their TTLs', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'read-many:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  await cache.mset([['a', 1], ['b', page], ['c', { at: new Date(0) }]])
  const before = await counts(client)
  assert.deepEqual(await cache.mget(['a', 'b', 'c', 'missing']), [1, page, { at: new Date(0) }, undefined])
  const after = await counts(client)
  assert.deepEqual({ mget: after.mget - before.mget, pttl: after.pttl - before.pttl, scripts: after.scripts - before.scripts }, { mget: 1, pttl: 0, scripts: 0 })
})

test('an entry of the previous format (no expiry inside) is still a hit during a rolling deploy, its TTL asked of Redis', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'legacy:', localTtl: 60 })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  // What the previous version wrote: kind 2, the envelope right after the 18-byte header, the TTL only in Redis.
  const previous = (v: unknown) => encode({ v, g: 0 })
  assert.equal(previous(page)[1], 0x02)
  await client.set('legacy:one', previous(page), 'PX', 3000)
  await client.set('legacy:m1', previous('first'), 'PX', 60_000)
  const viaV8 = encode({ v: { at: new Date(5) }, g: 0 })
  assert.equal(viaV8[1], 0x01)
  await client.set('legacy:m2', viaV8, 'PX', 60_000)
  const before = await counts(client)
  assert.deepEqual(await cache.getOrSetWithSource('one', async () => 'not called'), { value: page, source: 'redis' })
  assert.ok(cache.localTtl('one') > 0 && cache.localTtl('one') <= 3000, `the local copy (${cache.localTtl('one')} ms) ends with the Redis entry`)
  await cache.set('m3', 'current')
  assert.deepEqual(await cache.mget(['m1', 'm2', 'm3']), ['first', { at: new Date(5) }, 'current'])
  const after = await counts(client)
  // INFO commandstats counts the PTTLs a script calls too: one per previous-format key of the mget.
  assert.equal(after.pttl - before.pttl, 1 + 2, 'the single read asked PTTL once, after its GET found no expiry inside')
  assert.equal(after.scripts - before.scripts, 1, 'the mget asked the TTLs of its previous-format entries only, in one script')
  assert.equal(cache.getStats().decodeErrors, 0)
})

test('a budgeted read leaves the client\'s backstop command timeout in place for every other command', async (t) => {
  const client = createRedisClient({ url: server.url, commandTimeoutMs: 100 }) as Redis
  const cache = createCacheManager(client, { prefix: 'backstop:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  const backstop = client.options.commandTimeout
  assert.ok(typeof backstop === 'number' && backstop >= 10_000)
  await cache.set('k', 1)
  await Promise.all([cache.get('k'), cache.get('missing'), cache.mget(['k', 'missing'])])
  assert.equal(client.options.commandTimeout, backstop)
})

test('a Redis hit on an auto-pipelined client is sent as it is asked, not queued for the auto-pipeline, whose flush wrote it with a 10 s backstop timer per command', async (t) => {
  const client = createRedisClient({ url: server.url, autoPipelining: true }) as Redis
  const cache = createCacheManager(client, { prefix: 'pipelined:', localEnabled: false })
  // Every command ioredis arms its backstop timer for (Command#setTimeout), by name.
  const armed: string[] = []
  const setTimeout = Command.prototype.setTimeout
  Command.prototype.setTimeout = function (this: Command, ms: number) { armed.push(this.name); setTimeout.call(this, ms) }
  t.after(async () => { Command.prototype.setTimeout = setTimeout; await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  await cache.mset([['a', page], ['b', 2]])
  armed.length = 0
  const reads = await Promise.all([...Array.from({ length: 20 }, () => cache.get('a')), cache.mget(['a', 'b', 'missing']), cache.get('missing')])
  assert.deepEqual(reads, [...Array.from({ length: 20 }, () => page), [page, 2, undefined], undefined])
  assert.equal(client.autoPipelineQueueSize, 0)
  assert.deepEqual(armed, [], 'no read of the cache waited on the auto-pipeline or carried the backstop timer')
  // The client's own commands still go through its auto-pipeline, with their backstop.
  await Promise.all([client.get('pipelined:other'), client.get('pipelined:other')])
  assert.deepEqual(armed, ['get', 'get'])
})

/** Counts the socket's writes (each a system call) from now on: ioredis writes every command to `client.stream`. */
function countWrites (client: Redis): { writes: () => number, restore: () => void } {
  const stream = client.stream as unknown as { _write: (...a: unknown[]) => unknown, _writev?: (...a: unknown[]) => unknown }
  let writes = 0
  const write = stream._write
  const writev = stream._writev
  stream._write = function (this: unknown, ...a: unknown[]) { writes++; return write.apply(this, a) }
  if (writev) stream._writev = function (this: unknown, ...a: unknown[]) { writes++; return writev.apply(this, a) }
  return { writes: () => writes, restore: () => { stream._write = write; if (writev) stream._writev = writev } }
}

for (const autoPipelining of [false, true]) {
  test(`64 reads asked in one tick leave in two writes to the socket, not a system call each, and the first as it is asked (auto-pipelining ${autoPipelining ? 'on' : 'off'})`, async (t) => {
    const client = createRedisClient({ url: server.url, autoPipelining }) as Redis
    const cache = createCacheManager(client, { prefix: `tick-${String(autoPipelining)}:`, localEnabled: false })
    t.after(async () => { await cache.close(); await client.quit() })
    assert.ok(await cache.ready())
    await cache.mset([['a', page], ['b', 2]])
    await new Promise((resolve) => setImmediate(resolve))
    const counted = countWrites(client)
    t.after(() => { counted.restore() })
    const first = cache.get('a')
    assert.equal(counted.writes(), 1, 'the first read of the tick is written as it is asked')
    const reads = [first, ...Array.from({ length: 62 }, (_, i) => cache.get(i % 2 === 0 ? 'a' : 'b')), cache.mget(['a', 'b', 'missing'])]
    assert.equal(counted.writes(), 1, 'the others wait for the end of the tick')
    assert.deepEqual(await Promise.all(reads), [page, ...Array.from({ length: 62 }, (_, i) => (i % 2 === 0 ? page : 2)), [page, 2, undefined]])
    assert.equal(counted.writes(), 2)
    // Nothing stays held once the tick is over: a read asked later is written at once.
    assert.equal(client.stream.writableCorked, 0)
    const later = cache.get('b')
    assert.equal(counted.writes(), 3)
    assert.equal(await later, 2)
  })
}

test('reads asked in a tick that then runs long, of a Redis a 30 ms round trip away, are still hits: their budget starts when that tick ends, not as they are asked', async (t) => {
  const proxy = await startFaultProxy({ port: server.port })
  const client = createRedisClient({ url: proxy.rewrite(server.url) }) as Redis
  const cache = createCacheManager(client, { prefix: 'long-tick:', localEnabled: false, redisTimeoutMs: 100 })
  t.after(async () => { await cache.close(); client.disconnect(); await proxy.close() })
  assert.ok(await cache.ready())
  await cache.mset([['a', page], ['b', 2]])
  proxy.latency(15)
  await new Promise((resolve) => setImmediate(resolve))
  const timeoutsBefore = cache.getStats().redis.timeouts
  // The second read waits for the end of the tick (the writes of a tick leave together), which comes 95 ms later:
  // counted from the ask, its 100 ms budget would end before its reply, a round trip after the tick, could arrive.
  const reads = [cache.get('a'), cache.get('b')]
  blockEventLoop(95)
  assert.deepEqual(await Promise.all(reads), [page, 2])
  assert.equal(cache.getStats().redis.timeouts, timeoutsBefore)
})

for (const first of ['a cache write', 'another module\'s budgeted call (a rate limiter\'s check)'] as const) {
  test(`reads held behind ${first} asked first in their tick, with work queued to run before that tick ends, are still hits: their budget starts once the held writes have left`, async (t) => {
    // The link carries the bytes while this thread is blocked, as a network does while a process is busy.
    const proxy = await startLatencyProxyThread({ port: server.port }, 15)
    const client = createRedisClient({ url: proxy.rewrite(server.url) }) as Redis
    const other = createRedisClient({ url: server.url }) as Redis
    const cache = createCacheManager(client, { prefix: 'queued-work:', localEnabled: false, redisTimeoutMs: 100 })
    t.after(async () => { await cache.close(); client.disconnect(); other.disconnect(); await proxy.close() })
    assert.ok(await cache.ready())
    await cache.mset([['a', page], ['b', 2]])
    await new Promise((resolve) => setImmediate(resolve))
    const timeoutsBefore = cache.getStats().redis.timeouts
    // The call asked first starts the tick's budgets; the first read is written at once and holds the socket, so the
    // second leaves when the tick ends, a round trip (30 ms) before its reply. Work queued between the two (a stream
    // callback, a hook's nextTick) ran after the budgets started and before the held read was written.
    const firstCall = first === 'a cache write' ? cache.set('x', 1) : withBudget(new CircuitBreaker(5, 1000), 100, () => other.ping())
    process.nextTick(() => blockEventLoop(80))
    const reads = [cache.get('a'), cache.get('b')]
    assert.deepEqual(await Promise.all(reads), [page, 2])
    await firstCall
    assert.equal(cache.getStats().redis.timeouts, timeoutsBefore)
  })
}

/**
 * Runs `body` in a child process after it has made `cache` (local tier off, prefix `prefix`) over `client`, and waits
 * for `key` to read 'written' in Redis, as `body` must have set it before the child exited with 0.
 */
async function writtenByExitingChild (prefix: string, key: string, body: string): Promise<string | null> {
  const client = new Redis(server.url)
  await client.del(key)
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const { createCacheManager } = await import(${JSON.stringify(new URL('./cache-manager.js', import.meta.url).href)})
    const { createRedisClient } = await import(${JSON.stringify(new URL('../redis/index.js', import.meta.url).href)})
    const client = createRedisClient({ url: ${JSON.stringify(server.url)} })
    const cache = createCacheManager(client, { prefix: ${JSON.stringify(prefix)}, localEnabled: false })
    if (!await cache.ready()) process.exit(2)
    ${body}
  `], { stdio: ['ignore', 'ignore', 'inherit'] })
  const [code] = await once(child, 'exit')
  assert.equal(code, 0)
  let value: string | null = null
  for (let i = 0; i < 20 && value === null; i++) {
    value = await client.get(key)
    if (value === null) await new Promise((resolve) => setTimeout(resolve, 25))
  }
  await client.quit()
  return value
}

test('a command sent after a cache read, in a tick that ends the process (process.exit in a crash handler), still reaches Redis instead of staying held', async () => {
  const key = 'tick-exit:written'
  assert.equal(await writtenByExitingChild('tick-exit:', key, `
    await new Promise((resolve) => setImmediate(resolve))
    cache.get('a').catch(() => {})
    client.set(${JSON.stringify(key)}, 'written').catch(() => {})
    process.exit(0)
  `), 'written')
})

test('a command an exit listener sends after a cache read still reaches Redis, when the listener was added after the cache had held its first writes', async () => {
  const key = 'tick-exit-late:written'
  assert.equal(await writtenByExitingChild('tick-exit-late:', key, `
    // The first read of the process holds the socket and adds the listener that writes what is held at exit.
    await cache.get('warm')
    process.on('exit', () => {
      cache.get('a').catch(() => {})
      client.set(${JSON.stringify(key)}, 'written').catch(() => {})
    })
    setTimeout(() => process.exit(0), 10)
  `), 'written')
})

test('reads held for the end of the tick on a connection that drops in that tick settle, within the budget, and the cache reads again once it is back', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'tick-drop:', localEnabled: false, redisTimeoutMs: 200 })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  await cache.set('a', page)
  const started = Date.now()
  const reads = Array.from({ length: 20 }, () => cache.get('a'))
  client.stream.destroy()
  for (const read of await Promise.all(reads)) assert.ok(read === undefined || isDeepStrictEqual(read, page))
  assert.ok(Date.now() - started < 1_000, `settled in ${Date.now() - started} ms`)
  await once(client, 'ready')
  let value: unknown
  for (let i = 0; i < 50 && value === undefined; i++) {
    value = await cache.get('a')
    if (value === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.deepEqual(value, page)
})

test('on a client with a key prefix and auto-pipelining on, a Redis hit reads the prefixed key its write wrote, instead of missing every read or reading another namespace\'s key', async (t) => {
  // ioredis takes the prefix from the URL too: an operator sets it without touching code.
  const client = createRedisClient({ url: `${server.url}?keyPrefix=tenant-a:`, autoPipelining: true }) as Redis
  const bare = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'ns:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit(); await bare.quit() })
  assert.ok(await cache.ready())
  // The same cache key, written without the prefix by another app of the same Redis.
  await bare.set('ns:k', encode({ v: 'the other namespace', g: 0 }, 60_000), 'PX', 60_000)
  await cache.set('k', { v: 1 })
  await cache.set('k2', 'two')
  assert.deepEqual(await cache.get('k'), { v: 1 })
  assert.deepEqual(await cache.mget(['k', 'k2', 'missing']), [{ v: 1 }, 'two', undefined])
  let loads = 0
  for (let i = 0; i < 2; i++) assert.equal(await cache.getOrSet('k3', async () => { loads++; return 'three' }), 'three')
  assert.equal(loads, 1, 'the second getOrSet was a Redis hit')
  assert.ok(await bare.exists('tenant-a:ns:k'))
})

test('deletePattern on a client with a key prefix deletes the prefixed keys it matches, and only those', async (t) => {
  const client = createRedisClient({ url: `${server.url}?keyPrefix=tenant-b:` }) as Redis
  const bare = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'dp:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit(); await bare.quit() })
  assert.ok(await cache.ready())
  await bare.set('dp:user:1', 'another namespace\'s')
  await cache.set('user:1', 'v1')
  await cache.set('user:2', 'v2')
  await cache.set('order:1', 'o1')
  await cache.deletePattern('user:*')
  assert.deepEqual(await cache.mget(['user:1', 'user:2', 'order:1']), [undefined, undefined, 'o1'])
  assert.equal(await bare.get('dp:user:1'), 'another namespace\'s')
})

test('a cache on a client whose key prefix is a Buffer (ioredis takes one) reads, writes and deletes by pattern under it', async (t) => {
  const client = new Redis(server.url, { keyPrefix: Buffer.from('tenant-c:') as unknown as string })
  const bare = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'bp:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit(); await bare.quit() })
  assert.ok(await cache.ready())
  await cache.mset([['user:1', 'v1'], ['user:2', 'v2'], ['order:1', 'o1']])
  assert.deepEqual(await cache.mget(['user:1', 'order:1']), ['v1', 'o1'])
  assert.ok(await bare.exists('tenant-c:bp:user:1'))
  await cache.deletePattern('user:*')
  assert.deepEqual(await cache.mget(['user:1', 'user:2', 'order:1']), [undefined, undefined, 'o1'])
  assert.equal(await bare.exists('tenant-c:bp:user:1', 'tenant-c:bp:user:2'), 0)
})

test('Redis hits through getOrSet keep no page alive once answered: young-generation collections do not promote them to the old generation', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'retained:', localEnabled: false, redisTimeoutMs: 10_000 })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  // 64 KB decoded: 8,000 numbers.
  const keys = Array.from({ length: 64 }, (_, i) => `page:${i}`)
  await cache.mset(keys.map((key) => [key, Array.from({ length: 8000 }, (_, i) => i + 0.5)] as [string, unknown]))
  const round = (): Promise<unknown> => Promise.all(keys.map(async (key) => ((await cache.getOrSet(key, async () => [])) as number[]).length))
  // 1,280 pages of 64 KB: the single flight's Map of loads in flight, its replaced tables in the old generation still
  // holding the loads, kept a share of them alive through each young collection, which promoted them.
  const grewKb = await oldGenerationGrowthKb(round)
  assert.ok(grewKb < 8 * 1024, `the old generation grew by ${grewKb.toFixed(0)} KB over 1,280 Redis hits`)
})
