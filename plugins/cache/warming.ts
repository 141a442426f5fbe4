import { HotKeys } from './hot-keys.js'
import { LoaderRegistry, type RegisteredLoader } from './loaders.js'
import type { LocalEntry } from './local-tier.js'
import type { GetOrSetOptions, ResolvedCacheOptions } from './options.js'
import type { RedisTier } from './redis-tier.js'
import { RefreshAhead, type Reload } from './refresh-ahead.js'
import { Warmer } from './warmer.js'

/** Longest close() waits for background reloads still running. */
const CLOSE_WAIT_MS = 2000

// Local hits are the hot path (a peek is tens of ns): one in 16, drawn at random, is counted for 16. Hot keys are
// read thousands of times, so their rank does not change; misses, which cost a round trip anyway, are counted
// exactly. Random, not every 16th: a fixed stride aliases with round-robin reads and never samples some keys.
const SAMPLE_MASK = 15
// Refresh windows are seconds long; reading the system clock on every hit would cost more than the hit. The same
// timer sweeps the due keys, so a hot key is reloaded before it expires whenever it was read.
const SWEEP_MS = 100

/** What the cache manager lends its warming parts: loads through its own coherent paths. */
export interface WarmingHooks {
  /** Copies fresh entries from Redis into the local tier; resolves with how many. */
  fill: (keys: string[]) => Promise<number>
  /** A miss's load, bypassing the local tier. */
  rerun: (key: string, registered: RegisteredLoader) => Promise<void>
  /** Refresh-ahead's reload: copies a Redis entry with more than `windowMs` left, else loads if it wins the lock. */
  refresh: Reload
  /** Redis lost its data: drop everything local. */
  lost: () => void
  /** The invalidation link is up (its recovery, when it comes up, drops the loads in flight and checks again). */
  linked: () => boolean
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
  readonly #sweep: NodeJS.Timeout | undefined
  #now = Date.now()
  #random = 0x9e3779b9
  #sampled = false
  #ticking: Promise<void> | undefined
  #linking: Promise<void> | undefined
  readonly #isHot = (key: string): boolean => this.#hot.isHot(key)
  readonly #linked: () => boolean

  constructor (tier: RedisTier, options: ResolvedCacheOptions, hooks: WarmingHooks) {
    this.#linked = hooks.linked
    this.#hot = new HotKeys(options.hotKeysMax, tier, options.prefix, options.hotKeysIntervalMs)
    this.#loaders = new LoaderRegistry(options.hotKeysMax)
    this.#warmer = new Warmer(tier, this.#hot, this.#loaders, hooks, {
      prefix: options.prefix, enabled: options.warmEnabled, maxEntries: options.warmMaxEntries, timeoutMs: options.warmTimeoutMs
    })
    if (options.refreshAheadRatio > 0) {
      const ahead = new RefreshAhead(tier, this.#hot, hooks.refresh, {
        prefix: options.prefix,
        instanceId: options.instanceId,
        ratio: options.refreshAheadRatio,
        defaultTtl: options.ttl,
        maxKeys: options.refreshAheadMaxKeys,
        concurrency: options.refreshAheadConcurrency
      })
      this.#ahead = ahead
      this.#sweep = setInterval(() => {
        this.#now = Date.now()
        ahead.sweep(this.#now, this.#loaders.entries())
      }, SWEEP_MS).unref()
    }
    this.#timer = setInterval(() => { void this.tick() }, options.hotKeysIntervalMs).unref()
  }

  /** One read of `key`. */
  touch (key: string): void {
    this.#hot.touch(key)
  }

  /** A miss of `key` with its loader: remembered before the key is known to be hot, so it has one when it is. */
  miss (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions): void {
    this.#hot.touch(key)
    this.#loaders.note(key, loader, options, this.#isHot)
  }

  /** After `hit`: a local hit through getOrSet, which knows the loader a hit through peek does not. */
  hitWithLoader (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions): void {
    if (this.#sampled && !this.#loaders.has(key) && this.#hot.isHot(key)) this.#loaders.note(key, loader, options, this.#isHot)
  }

  /**
   * An entry of `key` with `freshMs` of Redis freshness left was stored here: schedules its reload. Returns the
   * key's schedule for the local copy to carry (reads update it), or undefined with refresh-ahead off or no loader.
   */
  stored (key: string, freshMs: number, ttlSeconds?: number): RegisteredLoader | undefined {
    const registered = this.#ahead ? this.#loaders.get(key) : undefined
    if (!this.#ahead || !registered) return undefined
    registered.dueAt = Date.now() + freshMs - this.#ahead.windowMs(ttlSeconds ?? registered.options.ttl)
    return registered
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
    const registered = entry.ahead
    if (registered === undefined) return
    registered.readAt = this.#now
    if (registered.dueAt <= this.#now) this.#ahead?.consider(key, registered, this.#now)
  }

  /** A Redis hit with `freshMs` left (the local tier may be off or the copy just expired). */
  redisHit (key: string, freshMs: number, ttlSeconds?: number): void {
    const registered = this.#ahead ? this.#loaders.get(key) : undefined
    if (!this.#ahead || !registered) return
    const now = Date.now()
    registered.readAt = now
    registered.dueAt = now + freshMs - this.#ahead.windowMs(ttlSeconds ?? registered.options.ttl)
    if (registered.dueAt <= now) this.#ahead.consider(key, registered, now)
  }

  async warm (): Promise<number> {
    return this.#warmer.warm()
  }

  /** Redis is reachable again: check at once whether it lost its data (once the invalidation link is up too). */
  linkUp (): void {
    if (!this.#linked()) return
    this.#linking = this.#warmer.checkEpoch().catch(() => {})
  }

  /** Resolves once the check started by the last `linkUp` is done. */
  async linked (): Promise<void> {
    await this.#linking
  }

  /**
   * Flushes hot-key counts (learning the fleet's hot set) after checking for a Redis flush; one at a time. A flush
   * replaces this instance's hot set with what Redis holds: reaching a Redis that lost its data before the check
   * has seen the loss (the check failed while Redis was away, the flush came after it was back), it would empty the
   * hot set the re-run needs. So a tick whose check failed flushes nothing; its counts wait for the next tick.
   * Nor does a tick check while the invalidation link is down: a restarted Redis gives the cache's connection back
   * before the link or after it, and the link's recovery, coming up while the re-run loads, would count every load
   * in flight as predating an invalidation and not write it to Redis, where no other instance re-runs it. The
   * link's recovery checks when it comes up.
   */
  async tick (): Promise<void> {
    this.#ticking ??= (async () => {
      if (!this.#linked()) return
      const checked = await this.#warmer.checkEpoch().then(() => true, () => false)
      if (!checked) return
      await this.#hot.flush().catch(() => {})
      this.#loaders.prune(this.#isHot)
    })().finally(() => { this.#ticking = undefined })
    return this.#ticking
  }

  stats (): { reruns: number, hotKeys: number, tracked: number } {
    return { reruns: this.#warmer.rerunCount, hotKeys: this.#hot.hotCount, tracked: this.#hot.tracked }
  }

  /**
   * Stops the timers, waits for the background reloads running (at most CLOSE_WAIT_MS: a reload is best effort, the
   * entry it would renew stays served until its expiry, and a shutdown must fit the orchestrator's grace period) and
   * hands this instance's last counts to the fleet, so a restart does not forget them.
   */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    clearInterval(this.#sweep)
    if (this.#ahead) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.#ahead.settled(), new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS) })])
      clearTimeout(timer)
    }
    await this.#ticking
    await this.#hot.flush().catch(() => {})
  }
}
