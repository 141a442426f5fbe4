import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createCacheManager } from './cache-manager.js'
import { Cacheable, CacheInvalidate } from './decorators.js'

test('with no Redis client the same API runs local-only', async () => {
  const cache = createCacheManager(undefined, { ttl: 60 })
  await cache.set('a', { n: 1 })
  assert.deepEqual(await cache.get('a'), { n: 1 })
  await cache.mset([['b', 2], ['c', 3]])
  assert.deepEqual(await cache.mget(['a', 'b', 'x', 'c']), [{ n: 1 }, 2, undefined, 3])
  await cache.del('b')
  assert.equal(await cache.get('b'), undefined)
  await cache.deletePattern('*')
  assert.equal(await cache.get('a'), undefined)
  const stats = cache.getStats()
  assert.equal(stats.mode, 'local-only')
  assert.equal(stats.localCacheEnabled, true)
  assert.equal(typeof stats.localCacheSize, 'number')
  await cache.close()
})

test('writing 1M distinct keys never grows the local tier past its bounds', async () => {
  const cache = createCacheManager(undefined, { localMaxEntries: 5000, localMaxBytes: 200_000 })
  let maxEntries = 0
  let maxBytes = 0
  for (let i = 0; i < 1_000_000; i++) {
    await cache.getOrSet(`k${i}`, async () => i)
    if (i % 10_000 === 0) {
      const s = cache.getStats().local
      maxEntries = Math.max(maxEntries, s.entries)
      maxBytes = Math.max(maxBytes, s.bytes)
    }
  }
  const s = cache.getStats()
  assert.ok(maxEntries <= 5000 && s.local.entries <= 5000, `entries ${maxEntries}`)
  assert.ok(maxBytes <= 200_000 && s.local.bytes <= 200_000, `bytes ${maxBytes}`)
  assert.ok(s.local.evictions >= 995_000)
  assert.equal(s.loader.calls, 1_000_000)
})

test('entries bigger than the byte bound are not kept locally', async () => {
  const cache = createCacheManager(undefined, { localMaxBytes: 1024 })
  await cache.getOrSet('big', async () => 'x'.repeat(5000))
  assert.equal(cache.getStats().local.entries, 0)
})

test('100 concurrent misses of one key run the loader once', async () => {
  const cache = createCacheManager(undefined)
  let calls = 0
  const loader = async () => {
    calls++
    await sleep(20)
    return 'v'
  }
  const values = await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('hot', loader)))
  assert.equal(calls, 1)
  assert.ok(values.every((v) => v === 'v'))
  assert.equal(cache.getStats().coalescedWaits, 99)
})

test('a rejected load is shared by the waiters and never cached', async () => {
  const cache = createCacheManager(undefined)
  let calls = 0
  const failing = async () => {
    calls++
    await sleep(5)
    throw new Error('db down')
  }
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => cache.getOrSet('k', failing)))
  assert.ok(results.every((r) => r.status === 'rejected'))
  assert.equal(calls, 1)
  assert.equal(await cache.getOrSet('k', async () => 'ok'), 'ok')
  assert.equal(calls, 1)
})

test('an expired entry is served within its grace period when the loader fails', async () => {
  const cache = createCacheManager(undefined, { ttl: 1, grace: 60 })
  await cache.getOrSet('k', async () => 'old', { ttl: 0.05 })
  await sleep(80)
  const got = await cache.getOrSetWithSource('k', async () => { throw new Error('db down') })
  assert.deepEqual(got, { value: 'old', source: 'stale' })
  assert.equal(cache.getStats().staleServes, 1)
  const fresh = await cache.getOrSetWithSource('k', async () => 'new', { ttl: 60 })
  assert.deepEqual(fresh, { value: 'new', source: 'loader' })
})

test('a tag invalidation makes every tagged entry stale and leaves the rest', async () => {
  const cache = createCacheManager(undefined)
  await cache.getOrSet('a', async () => 1, { tags: ['t1'] })
  await cache.getOrSet('b', async () => 2, { tags: ['t2'] })
  await cache.invalidateTags(['t1'])
  assert.equal((await cache.getOrSetWithSource('a', async () => 10, { tags: ['t1'] })).source, 'loader')
  assert.equal((await cache.getOrSetWithSource('b', async () => 20, { tags: ['t2'] })).source, 'local')
})

test('an invalidation during a load keeps the loaded value out of the cache', async () => {
  const cache = createCacheManager(undefined)
  const loading = cache.getOrSet('k', async () => {
    await sleep(20)
    return 'read before the write'
  })
  await sleep(5)
  await cache.del('k')
  assert.equal(await loading, 'read before the write')
  assert.equal((await cache.getOrSetWithSource('k', async () => 'fresh')).value, 'fresh')
})

test('@Cacheable caches per argument and @CacheInvalidate clears after success only', async () => {
  const cache = createCacheManager(undefined)
  let reads = 0
  class LeadService {
    @Cacheable(cache, { ttl: 60, prefix: 'lead:' })
    async getLeadById (id: string, opts: { full: boolean }) {
      reads++
      return { id, full: opts.full }
    }

    @CacheInvalidate(cache, { keys: (id: string, _fail: boolean) => [`lead:${JSON.stringify([id, { full: true }])}`] })
    async updateLead (id: string, fail: boolean) {
      if (fail) throw new Error('nope')
      return id
    }
  }
  const s = new LeadService()
  await s.getLeadById('1', { full: true })
  await s.getLeadById('1', { full: true })
  await s.getLeadById('2', { full: true })
  assert.equal(reads, 2)
  await assert.rejects(s.updateLead('1', true))
  await s.getLeadById('1', { full: true })
  assert.equal(reads, 2, 'a failed update invalidates nothing')
  await s.updateLead('1', false)
  await s.getLeadById('1', { full: true })
  assert.equal(reads, 3)
})

test('argument keys are stable across object key order', async () => {
  const cache = createCacheManager(undefined)
  let reads = 0
  class Repo {
    @Cacheable(cache)
    async find (filter: Record<string, unknown>) {
      reads++
      return filter
    }
  }
  const r = new Repo()
  await r.find({ a: 1, b: 2 })
  await r.find({ b: 2, a: 1 })
  assert.equal(reads, 1)
})
