import type { HotKeys } from './hot-keys.js'
import type { RegisteredLoader } from './loaders.js'
import type { RedisTier } from './redis-tier.js'
import { defineScript } from '../redis/index.js'

export interface RefreshAheadOptions {
  prefix: string
  instanceId: string
  ratio: number
  /** Seconds; the TTL of an entry whose loader did not say. */
  defaultTtl: number
  /** Only the keys ranked below this in the fleet's hot set are refreshed. */
  maxKeys: number
  /** Background reloads running at once on this instance. */
  concurrency: number
}

/**
 * What a reload did: `refreshed` (this instance ran the loader and stored the value), `current` (Redis already held a
 * fresh copy, now copied locally, or a miss here loaded the key meanwhile), `busy` (another instance holds the lock,
 * a miss here is running the loader, a read here outlived the reload's wait, or Redis is unreachable), `failed` (the
 * loader failed: the current value stays until it expires).
 */
export type RefreshOutcome = 'refreshed' | 'current' | 'busy' | 'failed'

/**
 * Reloads `key` unless Redis holds a copy with more than `windowMs` of freshness left; runs the loader only if
 * `acquire` resolves true, and counts it failed if it has not settled within `deadlineMs` (the lock's lifetime).
 */
export type Reload = (key: string, registered: RegisteredLoader, windowMs: number, acquire: () => Promise<boolean>, deadlineMs: number) => Promise<RefreshOutcome>

/** A key that was considered and is still due (lock taken elsewhere, loader failed) is considered again this much later. */
const RETRY_MS = 500

const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

interface UnlockCommands {
  chassisCacheUnlock: (key: string, owner: string) => Promise<number>
}

/**
 * Refresh-ahead (FusionCache's eager refresh, fleet-wide). A hot entry is due once its Redis copy has `ratio` of its
 * TTL or less left; it is reloaded when a read finds it due and, so that read timing does not matter, by a sweep of
 * the hottest keys this instance read within their TTL. Each instance first reads Redis: a copy another instance
 * already refreshed is copied into its local tier (no loader). Otherwise the one instance that takes
 * `<prefix>__refresh:<key>` runs the loader and writes like any fill (compare-and-set on the state it read), so a
 * delete or a tag invalidation that lands during the reload wins.
 */
export class RefreshAhead {
  readonly #o: RefreshAheadOptions
  readonly #tier: RedisTier
  readonly #hot: HotKeys
  readonly #reload: Reload
  readonly #running = new Map<string, Promise<void>>()

  constructor (tier: RedisTier, hot: HotKeys, reload: Reload, options: RefreshAheadOptions) {
    this.#tier = tier
    this.#hot = hot
    this.#reload = reload
    this.#o = options
    defineScript(tier.client, 'chassisCacheUnlock', { numberOfKeys: 1, lua: UNLOCK_LUA })
  }

  /** Ms before the end of its fresh period at which an entry of `ttlSeconds` is due for a reload. */
  windowMs (ttlSeconds: number | undefined): number {
    return this.#o.ratio * (ttlSeconds ?? this.#o.defaultTtl) * 1000
  }

  /** Starts a background reload of a due key, unless it is not among the hottest or the concurrency bound is reached. */
  consider (key: string, registered: RegisteredLoader, now: number): boolean {
    if (this.#running.has(key) || this.#running.size >= this.#o.concurrency) return false
    if (this.#hot.rank(key) >= this.#o.maxKeys || !this.#tier.available) return false
    registered.dueAt = now + RETRY_MS
    this.#running.set(key, this.#refresh(key, registered).finally(() => this.#running.delete(key)))
    return true
  }

  /** Reloads the due keys read within their TTL, hottest first, up to the concurrency bound. */
  sweep (now: number, loaders: Iterable<[string, RegisteredLoader]>): void {
    if (this.#running.size >= this.#o.concurrency) return
    const due: Array<[string, RegisteredLoader]> = []
    for (const [key, registered] of loaders) {
      if (registered.dueAt > now) continue
      if (registered.readAt < now - (registered.options.ttl ?? this.#o.defaultTtl) * 1000) continue
      if (this.#hot.rank(key) < this.#o.maxKeys) due.push([key, registered])
    }
    due.sort((a, b) => this.#hot.rank(a[0]) - this.#hot.rank(b[0]))
    for (const [key, registered] of due) {
      if (this.#running.size >= this.#o.concurrency) return
      this.consider(key, registered, now)
    }
  }

  get running (): number {
    return this.#running.size
  }

  /** Resolves once the reloads running now have settled (each within its lock's lifetime). */
  async settled (): Promise<void> {
    await Promise.all(this.#running.values())
  }

  async #refresh (key: string, registered: RegisteredLoader): Promise<void> {
    const windowMs = this.windowMs(registered.options.ttl)
    const lockKey = `${this.#o.prefix}__refresh:${key}`
    // The lock outlives a successful reload on purpose: an instance that reads Redis after it finds the fresh copy;
    // one that read just before the write finds the lock taken; so does one whose reload found a miss here had just
    // loaded the key (`current`). A reload that took it and did nothing (`busy`: a read here outlived its wait, a
    // miss here took over) or failed gives it back, so that another, or this instance's next try, may reload before
    // the entry expires.
    const lockMs = Math.min(Math.max(Math.ceil(windowMs), 1000), 60_000)
    let took = false
    try {
      const acquire = async (): Promise<boolean> => {
        took = (await this.#tier.run((client) => client.set(lockKey, this.#o.instanceId, 'PX', lockMs, 'NX'))) === 'OK'
        return took
      }
      // A loader that never settles would hold this key's load (which a miss after expiry joins) and a concurrency
      // slot for good; past the lock's lifetime another instance may reload the key anyway.
      const outcome = await this.#reload(key, registered, windowMs, acquire, lockMs)
      if (took && (outcome === 'busy' || outcome === 'failed')) await this.#tier.run((client) => (client as unknown as UnlockCommands).chassisCacheUnlock(lockKey, this.#o.instanceId))
    } catch {
      // Redis failed: the entry expires as it would have without refresh-ahead, or a later sweep retries.
    }
  }
}
