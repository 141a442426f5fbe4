import { HotKeys } from './hot-keys.js'
import { LoaderRegistry, type RegisteredLoader } from './loaders.js'
import type { LocalEntry } from './local-tier.js'
import type { GetOrSetOptions, ResolvedCacheOptions } from './options.js'
import type { RedisTier } from './redis-tier.js'
import { RefreshAhead } from './refresh-ahead.js'
import { Warmer } from './warmer.js'

/** A local copy that asked for a reload asks again at most this often (the reload may have lost its lock). */
const RETRY_MS = 500
// Local hits are the hot path (a peek is tens of ns): one in 16, drawn at random, is counted for 16. Hot keys are
// read thousands of times, so their rank does not change; misses, which cost a round trip anyway, are counted
// exactly. Random, not every 16th: a fixed stride aliases with round-robin reads and never samples some keys.
const SAMPLE_MASK = 15
// Refresh windows are seconds long; reading the system clock on every hit would cost more than the hit.
const CLOCK_MS = 50

/** What the cache manager lends its warming parts: loads through its own coherent paths. */
export interface WarmingHooks {
  /** Copies fresh entries from Redis into the local tier; resolves with how many. */
  fill: (keys: string[]) => Promise<number>
  /** A miss's load, bypassing the local tier. */
  rerun: (key: string, registered: RegisteredLoader) => Promise<void>
  /** A miss's load that also replaces a Redis entry with `windowMs` or less of freshness left. */
  refresh: (key: string, registered: RegisteredLoader, windowMs: number) => Promise<void>
  /** Redis lost its data: drop everything local. */
  lost: () => void
}

/**
 * Hot keys, warming on start, the re-run after a Redis flush and refresh-ahead, behind the few calls the cache
 * manager makes on its read paths. Exists only with a Redis tier and `hotKeysMax` > 0.
 */
export class Warming {
  readonly #hot: HotKeys
  readonly #loaders: LoaderRegistry
  readonly #warmer: Warmer
  readonly #ahead: RefreshAhead | undefined
  readonly #timer: NodeJS.Timeout
  readonly #clock: NodeJS.Timeout | undefined
  #now = Date.now()
  #random = 0x9e3779b9
  #sampled = false
  #ticking: Promise<void> | undefined

  constructor (tier: RedisTier, options: ResolvedCacheOptions, hooks: WarmingHooks) {
    this.#hot = new HotKeys(options.hotKeysMax, tier, options.prefix, options.hotKeysIntervalMs)
    this.#loaders = new LoaderRegistry(options.hotKeysMax)
    this.#warmer = new Warmer(tier, this.#hot, this.#loaders, hooks, {
      prefix: options.prefix, enabled: options.warmEnabled, maxEntries: options.warmMaxEntries, timeoutMs: options.warmTimeoutMs
    })
    if (options.refreshAheadRatio > 0) {
      this.#ahead = new RefreshAhead(tier, this.#hot, this.#loaders, hooks.refresh, {
        prefix: options.prefix, instanceId: options.instanceId, ratio: options.refreshAheadRatio, defaultTtl: options.ttl
      })
    }
    this.#timer = setInterval(() => { void this.tick() }, options.hotKeysIntervalMs).unref()
    if (this.#ahead) this.#clock = setInterval(() => { this.#now = Date.now() }, CLOCK_MS).unref()
  }

  /** One read of `key`. */
  touch (key: string): void {
    this.#hot.touch(key)
  }

  /** A miss of `key` with its loader: remembered while the key is hot. */
  miss (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions): void {
    this.#hot.touch(key)
    if (this.#hot.isHot(key)) this.#loaders.note(key, loader, options)
  }

  /** After `hit`: a local hit through getOrSet, which knows the loader a hit through peek does not. */
  hitWithLoader (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions): void {
    if (this.#sampled && !this.#loaders.has(key) && this.#hot.isHot(key)) this.#loaders.note(key, loader, options)
  }

  /** Epoch ms from which reads of an entry with `freshMs` left ask for a reload; undefined with refresh-ahead off. */
  refreshAt (key: string, freshMs: number, ttlSeconds?: number): number | undefined {
    if (!this.#ahead) return undefined
    return Date.now() + freshMs - this.#ahead.windowMs(ttlSeconds ?? this.#loaders.get(key)?.options.ttl)
  }

  /** A read of a local entry: asks for a reload once it is within its refresh window. */
  hit (key: string, entry: LocalEntry): void {
    // xorshift32: a few integer operations, where Math.random costs a call.
    let x = this.#random
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#random = x
    this.#sampled = (x & SAMPLE_MASK) === 0
    if (this.#sampled) this.#hot.touch(key, SAMPLE_MASK + 1)
    if (entry.refreshAt === undefined || entry.refreshAt > this.#now) return
    entry.refreshAt = this.#now + RETRY_MS
    this.#ahead?.consider(key)
  }

  /** A Redis hit with `freshMs` left (the local tier may be off or the copy just expired). */
  redisHit (key: string, freshMs: number, ttlSeconds?: number): void {
    if (this.#ahead && freshMs <= this.#ahead.windowMs(ttlSeconds ?? this.#loaders.get(key)?.options.ttl)) this.#ahead.consider(key)
  }

  async warm (): Promise<number> {
    return this.#warmer.warm()
  }

  /** Redis is reachable again: check at once whether it lost its data. */
  linkUp (): void {
    this.#warmer.checkEpoch().catch(() => {})
  }

  /** Flushes hot-key counts (learning the fleet's hot set) after checking for a Redis flush; one at a time. */
  async tick (): Promise<void> {
    this.#ticking ??= (async () => {
      await this.#warmer.checkEpoch().catch(() => {})
      await this.#hot.flush().catch(() => {})
      this.#loaders.keep((key) => this.#hot.isHot(key))
    })().finally(() => { this.#ticking = undefined })
    return this.#ticking
  }

  stats (): { reruns: number, hotKeys: number, tracked: number } {
    return { reruns: this.#warmer.rerunCount, hotKeys: this.#hot.hotCount, tracked: this.#hot.tracked }
  }

  /** Stops the timer and hands this instance's last counts to the fleet, so a restart does not forget them. */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    clearInterval(this.#clock)
    await this.#ticking
    await this.#hot.flush().catch(() => {})
  }
}
