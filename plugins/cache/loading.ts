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
  readonly #flight: SingleFlight<Loaded>

  constructor (core: CacheCore) {
    this.#core = core
    this.#flight = new SingleFlight(() => { core.stats.coalesced++ })
  }

  /** A local miss: joins the load of `key` in flight, or starts one (Redis, then the loader). */
  miss (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, localStale: LocalEntry | undefined): Promise<Loaded> {
    return this.#flight.run(key, async () => {
      const startSeq = this.#core.history.seq
      const redis = await readForLoad(this.#core, key)
      const entry = redis.entry
      if (entry && entry.freshMs > 0) {
        this.#core.stats.redisHits++
        storeLocal(this.#core, key, entry, startSeq, options.ttl)
        this.#core.warming?.redisHit(key, entry.freshMs, options.ttl)
        return { value: entry.value, source: 'redis' }
      }
      if (redis.read) this.#core.stats.redisMisses++
      return this.#fill(key, loader, options, redis, startSeq, localStale ?? entry, false)
    })
  }

  /**
   * Refresh-ahead's reload of `key`. An entry Redis holds with more than `windowMs` of freshness left (another
   * instance refreshed it) is copied into the local tier; otherwise the loader runs if `acquire` wins the fleet's lock.
   */
  async refresh (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, windowMs: number, acquire: () => Promise<boolean>): Promise<RefreshOutcome> {
    const core = this.#core
    if (core.closed || this.#flight.has(key)) return 'busy'
    const startSeq = core.history.seq
    const redis = await readForLoad(core, key)
    if (!redis.read) return 'busy'
    if (redis.entry && redis.entry.freshMs > windowMs) {
      storeLocal(core, key, redis.entry, startSeq, options.ttl)
      return 'current'
    }
    if (!(await acquire()) || core.closed || this.#flight.has(key)) return 'busy'
    core.stats.refreshes++
    const loaded = await this.#flight.run(key, () => this.#fill(key, loader, options, redis, startSeq, redis.entry, true)).catch(() => undefined)
    return loaded === undefined || loaded.source === 'stale' ? 'failed' : 'refreshed'
  }

  /**
   * Runs the loader and writes both tiers. The Redis write is a compare-and-set on the state read before the loader,
   * so a delete that lands meanwhile wins. A failing loader is answered with `stale` when there is one.
   */
  async #fill (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, redis: RedisRead, startSeq: number, stale: { value: unknown } | undefined, background: boolean): Promise<Loaded> {
    const core = this.#core
    const ttlMs = (options.ttl ?? core.options.ttl) * 1000
    const graceMs = (options.grace ?? core.options.grace) * 1000
    const gens = options.tags && options.tags.length > 0 ? await core.tags.of(options.tags) : undefined
    core.stats.loaderCalls++
    const started = performance.now()
    let value: unknown
    try {
      value = await loader()
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
