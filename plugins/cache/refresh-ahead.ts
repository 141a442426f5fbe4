import type { HotKeys } from './hot-keys.js'
import type { LoaderRegistry, RegisteredLoader } from './loaders.js'
import type { RedisTier } from './redis-tier.js'

export interface RefreshAheadOptions {
  prefix: string
  instanceId: string
  ratio: number
  /** Seconds; the TTL of an entry whose loader did not say. */
  defaultTtl: number
}

/** Reloads `key` unless Redis already holds a copy with more than `windowMs` of freshness left. */
export type Reload = (key: string, registered: RegisteredLoader, windowMs: number) => Promise<void>

/**
 * Refresh-ahead (FusionCache's eager refresh, fleet-wide): a hot entry read within the last `ratio` of its TTL is
 * reloaded in the background by the one instance that takes the key's lock in Redis; every reader keeps getting the
 * current value meanwhile, and the reload is written like any fill (compare-and-set on the state the reader saw), so
 * a delete or a tag invalidation that lands during the reload wins.
 */
export class RefreshAhead {
  readonly #o: RefreshAheadOptions
  readonly #tier: RedisTier
  readonly #hot: HotKeys
  readonly #loaders: LoaderRegistry
  readonly #reload: Reload
  readonly #running = new Set<string>()

  constructor (tier: RedisTier, hot: HotKeys, loaders: LoaderRegistry, reload: Reload, options: RefreshAheadOptions) {
    this.#tier = tier
    this.#hot = hot
    this.#loaders = loaders
    this.#reload = reload
    this.#o = options
  }

  /** Ms before the end of its fresh period at which an entry of `ttlSeconds` is due for a reload. */
  windowMs (ttlSeconds: number | undefined): number {
    return this.#o.ratio * (ttlSeconds ?? this.#o.defaultTtl) * 1000
  }

  /** A read found `key` within its window: reload it in the background if it is hot and its loader is known. */
  consider (key: string): void {
    if (this.#running.has(key) || !this.#hot.isHot(key)) return
    const registered = this.#loaders.get(key)
    if (!registered || !this.#tier.available) return
    this.#running.add(key)
    void this.#refresh(key, registered).finally(() => this.#running.delete(key))
  }

  get running (): number {
    return this.#running.size
  }

  async #refresh (key: string, registered: RegisteredLoader): Promise<void> {
    const windowMs = this.windowMs(registered.options.ttl)
    // The lock outlives the reload on purpose: an instance whose local copy still shows the old expiry finds it
    // taken and does not ask again; one that gets it later finds the fresh copy in Redis and runs no loader.
    const lockMs = Math.min(Math.max(Math.ceil(windowMs), 1000), 60_000)
    try {
      const won = await this.#tier.run((client) => client.set(`${this.#o.prefix}__refresh:${key}`, this.#o.instanceId, 'PX', lockMs, 'NX'))
      if (won === 'OK') await this.#reload(key, registered, windowMs)
    } catch {
      // Redis or the loader failed: the entry expires as it would have without refresh-ahead.
    }
  }
}
