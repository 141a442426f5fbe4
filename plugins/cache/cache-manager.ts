import type { RedisClient } from '../redis/index.js'
import { CircuitBreaker } from '../redis/index.js'
import { ChangeHistory } from './change-history.js'
import type { CacheCore, KeyRead } from './core.js'
import { CacheErrors } from './errors.js'
import { InvalidationBus } from './invalidation-bus.js'
import { Invalidator } from './invalidation.js'
import { LinkRecovery } from './link-recovery.js'
import { Loading, type CacheSource } from './loading.js'
import { LocalTier, type LocalEntry } from './local-tier.js'
import { PendingKeys } from './pending-keys.js'
import { resolveCacheOptions, type CacheOptions, type GetOrSetOptions, type ResolvedCacheOptions } from './options.js'
import { RedisTier } from './redis-tier.js'
import { SingleFlight } from './single-flight.js'
import { CacheCounters, snapshot, type CacheStats } from './stats.js'
import { TagGenerations } from './tag-generations.js'
import { localFresh, localHit, readMany, readOne } from './tier-reads.js'
import { Warming } from './warming.js'
import { writeMany, type SetOptions } from './writes.js'

export type { CacheSource, GetOrSetOptions, SetOptions }

/**
 * A two-tier cache: a bounded in-process LRU in front of Redis, kept coherent across instances by an invalidation
 * bus. Every read path coalesces concurrent misses; Redis failures never reach the caller (the cache degrades to
 * local-only and recovers by itself). Without a Redis client it runs local-only behind the same API.
 */
export class CacheManager {
  readonly options: ResolvedCacheOptions
  readonly #core: CacheCore
  readonly #breaker: CircuitBreaker | undefined
  readonly #bus: InvalidationBus | undefined
  readonly #loading: Loading
  readonly #invalidator: Invalidator

  constructor (redis: RedisClient | undefined, options: CacheOptions = {}) {
    const o = resolveCacheOptions(options)
    this.options = o
    const stats = new CacheCounters()
    const local = new LocalTier(o.localMaxEntries, o.localMaxBytes, () => { stats.evictions++ })
    // The breaker and the bus call back into `recovery` only once Redis fails or the link changes, after construction.
    this.#breaker = redis ? new CircuitBreaker(o.breakerThreshold, o.breakerCooldownMs, (state) => { recovery.onBreaker(state) }) : undefined
    const tier = redis && this.#breaker ? new RedisTier(redis, o.redisTimeoutMs, this.#breaker, stats) : undefined
    const history = new ChangeHistory()
    // A get shares a read of its key begun before any change that may touch the key: changes of other keys (an
    // import's batches, writes elsewhere) do not stop a hot key's reads being shared.
    const reads = new SingleFlight<KeyRead>(() => { stats.coalesced++ }, (key, began, stamp) => began === stamp || (began < stamp && history.untouchedSince(key, began)))
    const core: CacheCore = { options: o, local, tier, stats, tags: new TagGenerations(tier, o.prefix), history, pending: new PendingKeys(), reads, warming: undefined, closed: false, linked: () => this.#bus?.up ?? true }
    this.#core = core
    this.#loading = new Loading(core)
    if (redis && tier) {
      this.#bus = new InvalidationBus(redis, tier, stats, {
        channel: `${o.prefix}__invalidate`,
        instanceId: o.instanceId,
        ackTimeoutMs: o.ackTimeoutMs,
        onInvalidation: (inv) => this.#invalidator.apply(inv),
        onLink: (up) => { recovery.onLink(up) },
        log: (msg, err) => o.logger?.warn({ err: { message: (err as Error | undefined)?.message } }, msg)
      })
    }
    this.#invalidator = new Invalidator(core, this.#bus)
    const recovery = new LinkRecovery(core, this.#invalidator)
    if (tier && o.hotKeysMax > 0) {
      const flush = recovery.flush.bind(recovery)
      core.warming = new Warming(tier, o, {
        fill: async (keys) => {
          const stored = { count: 0 }
          await readMany(core, keys, core.history.seq, stored)
          return stored.count
        },
        rerun: async (key, { loader, options }) => { await this.getOrSetWithSource(key, loader, options) },
        refresh: (key, { loader, options }, windowMs, acquire, deadlineMs) => this.#loading.refresh(key, loader, options, windowMs, acquire, deadlineMs),
        lost: flush,
        linked: () => this.#bus?.up ?? true
      })
    }
  }

  /**
   * Waits until the invalidation bus is subscribed and the instance has checked whether Redis lost its data
   * (immediately true when local-only).
   */
  async ready (timeoutMs = 2000): Promise<boolean> {
    if (!this.#bus) return true
    const up = await this.#bus.ready(timeoutMs)
    if (up) await this.#core.warming?.linked()
    return up
  }

  /**
   * Fills the local tier with the fleet's hottest entries from Redis, bounded by warmMaxEntries and warmTimeoutMs;
   * resolves with how many. Call after `ready()`: an entry copied before the bus listens could miss its invalidation.
   */
  async warm (): Promise<number> {
    const warming = this.#core.warming
    if (!warming || (this.#bus && !this.#bus.up)) return 0
    const warmed = await warming.warm()
    this.#core.stats.warmed += warmed
    return warmed
  }

  /** Flushes this instance's hot-key counts now and learns the fleet's hot set (otherwise every hotKeysIntervalMs). */
  async flushHotKeys (): Promise<void> {
    await this.#core.warming?.tick()
  }

  async get<T = unknown> (key: string): Promise<T | undefined> {
    const local = localFresh(this.#core, key)
    if (local) return local.value as T
    return (await readOne(this.#core, key, this.#core.history.seq))?.value as T | undefined
  }

  /** The fresh in-process value of `key`, synchronously; undefined sends the caller to `getOrSet`. */
  peek<T = unknown> (key: string): T | undefined {
    return localHit(this.#core, key)?.value as T | undefined
  }

  async getOrSet<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<T> {
    const local = localHit(this.#core, key)
    if (local) {
      this.#core.warming?.hitWithLoader(key, loader, options)
      return local.value as T
    }
    return (await this.getOrSetWithSource(key, loader, options)).value
  }

  /** `getOrSet` under the name other caches use. */
  wrap<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<T> {
    return this.getOrSet(key, loader, options)
  }

  /** Like getOrSet, and says where the value came from: local, redis, loader or stale (loader failed, grace value). */
  async getOrSetWithSource<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<{ value: T, source: CacheSource }> {
    const core = this.#core
    if (core.closed) throw new CacheErrors.CACHE_CLOSED()
    const hit = localHit(core, key)
    if (hit) {
      core.warming?.hitWithLoader(key, loader, options)
      return { value: hit.value as T, source: 'local' }
    }
    core.warming?.miss(key, loader, options)
    let stale: LocalEntry | undefined
    if (core.options.localEnabled) {
      core.stats.localMisses++
      stale = core.local.getStale(key)
      if (stale && !core.tags.current(stale.tags)) stale = undefined
    }
    return this.#loading.miss(key, loader, options, stale) as Promise<{ value: T, source: CacheSource }>
  }

  async set (key: string, value: unknown, ttlSeconds?: number, options: SetOptions = {}): Promise<void> {
    await this.mset([[key, value]], ttlSeconds, options)
  }

  /** Writes several entries in one pipeline (chunked), then invalidates them on the other instances in one message. */
  async mset (entries: Array<[string, unknown]> | Record<string, unknown>, ttlSeconds?: number, options: SetOptions = {}): Promise<void> {
    await writeMany(this.#core, this.#invalidator, Array.isArray(entries) ? entries : Object.entries(entries), ttlSeconds, options)
  }

  async mget<T = unknown> (keys: string[]): Promise<Array<T | undefined>> {
    const out = new Array<T | undefined>(keys.length)
    const missing: Array<{ i: number, key: string }> = []
    keys.forEach((key, i) => {
      const local = localFresh(this.#core, key)
      if (local) out[i] = local.value as T
      else missing.push({ i, key })
    })
    if (missing.length > 0) {
      const found = await readMany(this.#core, missing.map((m) => m.key), this.#core.history.seq)
      missing.forEach((m, j) => { out[m.i] = found[j]?.value as T | undefined })
    }
    return out
  }

  async del (keys: string | string[]): Promise<void> {
    await this.invalidate({ keys: Array.isArray(keys) ? keys : [keys] })
  }

  /** Deletes every key matching a Redis glob (after the prefix) by SCAN and UNLINK. Build patterns with `cachePattern`. */
  async deletePattern (pattern: string): Promise<void> {
    await this.invalidate({ patterns: [pattern] })
  }

  /** Makes every entry tagged with one of `tags` stale on every instance: one INCR per tag, whatever the entry count. */
  async invalidateTags (tags: string[]): Promise<void> {
    await this.invalidate({ tags })
  }

  /** Keys, patterns and tags in one go, with one message to the other instances. */
  async invalidate (what: { keys?: string[], patterns?: string[], tags?: string[] }): Promise<void> {
    await this.#invalidator.invalidate(what)
  }

  getStats (): CacheStats {
    const { local, tier, stats, warming, options } = this.#core
    return snapshot(stats, {
      localEnabled: options.localEnabled,
      entries: local.size,
      bytes: local.bytes,
      maxEntries: local.maxEntries,
      maxBytes: local.maxBytes,
      hasRedis: tier !== undefined,
      breaker: this.#breaker?.state ?? 'none',
      connected: tier ? tier.client.status === 'ready' && (this.#bus?.up ?? false) : false,
      pendingInvalidations: this.#invalidator.pendingCount,
      ...(warming?.stats() ?? { reruns: 0, hotKeys: 0, tracked: 0 })
    })
  }

  /** Ms the in-process copy of `key` has left (0 when absent); for operators and tests. */
  localTtl (key: string): number {
    return this.#core.local.remainingTtl(key)
  }

  /**
   * Stops the background work (waiting for the reloads running, so their loaders finish while what they use is still
   * open) and the invalidation bus; the Redis client belongs to the caller.
   */
  async close (): Promise<void> {
    const core = this.#core
    if (core.closed) return
    core.closed = true
    this.#invalidator.close()
    await core.warming?.close()
    await this.#bus?.close()
    core.local.clear()
  }
}

/** Creates a cache over a Redis client (standalone or cluster), or local-only when `redis` is undefined. */
export function createCacheManager (redis: RedisClient | undefined, options: CacheOptions = {}): CacheManager {
  return new CacheManager(redis, options)
}
