import { encode } from './codec.js'
import { fullKey, type CacheCore } from './core.js'
import type { LocalEntry } from './local-tier.js'
import type { GetOrSetOptions } from './options.js'
import type { RefreshOutcome } from './refresh-ahead.js'
import { SingleFlight } from './single-flight.js'
import { readForLoad, storeLocal, type RedisRead } from './tier-reads.js'

export type CacheSource = 'local' | 'redis' | 'loader' | 'stale'

export interface Loaded {
  value: unknown
  source: CacheSource
}

/**
 * Loading through the tiers: a miss reads Redis, then runs the loader once per key on this instance (single flight)
 * and fills both tiers, unless an invalidation of the key arrived meanwhile. Refresh-ahead's reload goes the same way.
 */
export class Loading {
  readonly #core: CacheCore
  readonly #flight: SingleFlight<Loaded & { freshMs?: number }>
  /** Keys whose load in flight is a background reload. */
  readonly #refreshing = new Set<string>()
  /** Keys whose load in flight here is a miss running the loader (past its read of Redis). */
  readonly #missLoading = new Set<string>()

  constructor (core: CacheCore) {
    this.#core = core
    this.#flight = new SingleFlight(() => { core.stats.coalesced++ })
  }

  /**
   * A local miss: joins the load of `key` in flight, or starts one (Redis, then the loader). While a background
   * reload of the key runs, the current Redis copy answers; only a key with none left waits for the reload.
   */
  async miss (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, localStale: LocalEntry | undefined): Promise<Loaded> {
    const load = (): Promise<Loaded & { freshMs?: number }> => this.#flight.run(key, () => this.#load(key, loader, options, localStale))
    const loaded = this.#refreshing.has(key) ? (await this.#fromRedis(key, options)) ?? (await load()) : await load()
    // Outside the flight: a reload this read starts must not find the read's own load running and give up.
    if (loaded.freshMs !== undefined) this.#core.warming?.redisHit(key, loaded.freshMs, options.ttl)
    return { value: loaded.value, source: loaded.source }
  }

  async #load (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, localStale: LocalEntry | undefined): Promise<Loaded & { freshMs?: number }> {
    const startSeq = this.#core.history.seq
    const redis = await readForLoad(this.#core, key)
    const entry = redis.entry
    if (entry && entry.freshMs > 0) {
      this.#core.stats.redisHits++
      storeLocal(this.#core, key, entry, startSeq, options.ttl)
      return { value: entry.value, source: 'redis', freshMs: entry.freshMs }
    }
    if (redis.read) this.#core.stats.redisMisses++
    this.#missLoading.add(key)
    try {
      return await this.#fill(key, loader, options, redis, startSeq, localStale ?? entry)
    } finally {
      this.#missLoading.delete(key)
    }
  }

  /** A fresh Redis copy of `key`, or undefined. */
  async #fromRedis (key: string, options: GetOrSetOptions): Promise<(Loaded & { freshMs: number }) | undefined> {
    const startSeq = this.#core.history.seq
    const entry = (await readForLoad(this.#core, key)).entry
    if (!entry || entry.freshMs <= 0) return undefined
    this.#core.stats.redisHits++
    storeLocal(this.#core, key, entry, startSeq, options.ttl)
    return { value: entry.value, source: 'redis', freshMs: entry.freshMs }
  }

  /**
   * Refresh-ahead's reload of `key`. An entry Redis holds with more than `windowMs` of freshness left (another
   * instance refreshed it) is copied into the local tier; otherwise the loader runs if `acquire` wins the fleet's lock.
   * A miss here running the loader makes it `busy` at once (that miss writes what the reload would, and waiting on
   * it would hold a reload slot other hot keys need). A read of Redis in flight once the lock is won is waited for,
   * within the Redis budget of a read, not given up on: the reads that start meanwhile read Redis outside the load,
   * so a key read back to back (the local tier off or expired) is still reloaded before it expires.
   */
  async refresh (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, windowMs: number, acquire: () => Promise<boolean>, deadlineMs: number): Promise<RefreshOutcome> {
    const core = this.#core
    if (core.closed || this.#missLoading.has(key)) return 'busy'
    const startSeq = core.history.seq
    const redis = await readForLoad(core, key)
    if (!redis.read) return 'busy'
    if (redis.entry && redis.entry.freshMs > windowMs) {
      storeLocal(core, key, redis.entry, startSeq, options.ttl)
      return 'current'
    }
    if (!(await acquire()) || core.closed || this.#missLoading.has(key)) return 'busy'
    const lockedAt = performance.now()
    this.#refreshing.add(key)
    try {
      const running = this.#flight.running(key)
      if (running) {
        // A read of Redis and its tags: two budgeted round trips. One that turned into a miss's loader meanwhile
        // is not waited for past them.
        const ran = await withDeadline(running, Math.min(deadlineMs, 2 * core.options.redisTimeoutMs)).catch(() => undefined)
        if (ran === undefined || ran.source === 'stale' || core.closed || this.#flight.has(key)) return 'busy'
        if (ran.source === 'loader') return 'current'
      }
      // The loader gets what is left of the lock's lifetime, not a lifetime of its own.
      const leftMs = deadlineMs - (performance.now() - lockedAt)
      if (leftMs <= 0) return 'busy'
      core.stats.refreshes++
      const loaded = await this.#flight.run(key, () => this.#fill(key, loader, options, redis, startSeq, redis.entry, leftMs)).catch(() => undefined)
      return loaded === undefined || loaded.source === 'stale' ? 'failed' : 'refreshed'
    } finally {
      this.#refreshing.delete(key)
    }
  }

  /**
   * Runs the loader and writes both tiers. The Redis write is a compare-and-set on the state read before the loader,
   * so a delete that lands meanwhile wins. A failing loader is answered with `stale` when there is one. A background
   * reload passes `deadlineMs`: a loader still running then counts as failed.
   */
  async #fill (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, redis: RedisRead, startSeq: number, stale: { value: unknown } | undefined, deadlineMs?: number): Promise<Loaded> {
    const background = deadlineMs !== undefined
    const core = this.#core
    const ttlMs = (options.ttl ?? core.options.ttl) * 1000
    const graceMs = (options.grace ?? core.options.grace) * 1000
    const gens = options.tags && options.tags.length > 0 ? await core.tags.of(options.tags) : undefined
    core.stats.loaderCalls++
    const started = performance.now()
    let value: unknown
    try {
      value = await (background ? withDeadline(loader(), deadlineMs) : loader())
    } catch (error) {
      core.stats.loaderErrors++
      if (stale) {
        if (!background) core.stats.staleServes++
        return { value: stale.value, source: 'stale' }
      }
      throw error
    } finally {
      core.stats.loaderLatency.add(performance.now() - started)
    }
    if (options.cacheIf && !options.cacheIf(value)) {
      core.stats.uncachedLoads++
      return { value, source: 'loader' }
    }
    const payload = encode({ v: value, g: graceMs, ...(gens ? { t: gens } : {}) }, ttlMs)
    if (core.history.changedSince(key, options.tags, startSeq)) {
      core.stats.uncachedLoads++
      return { value, source: 'loader' }
    }
    if (core.tier && redis.read) {
      try {
        if (!(await core.tier.fill(fullKey(core, key), redis.token, payload, ttlMs + graceMs))) {
          // A delete landed between our read and our write: the value may predate it.
          core.stats.uncachedLoads++
          return { value, source: 'loader' }
        }
      } catch {
        // Redis failed after the read: keep the value locally only.
      }
    }
    storeLocal(core, key, { value, tags: gens, freshMs: ttlMs, pttl: ttlMs + graceMs, size: payload.length }, startSeq, options.ttl)
    return { value, source: 'loader' }
  }
}

async function withDeadline<T> (loading: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`background reload still running after ${ms} ms`)) }, ms)
    // Background work: a hung loader must not keep a closed process alive until the deadline.
    timer.unref()
  })
  try {
    return await Promise.race([loading, expired])
  } finally {
    clearTimeout(timer)
  }
}
