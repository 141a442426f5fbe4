interface Holder<T> {
  load: Promise<T> | undefined
  stamp: number
  /** performance.now() when the load began, for a caller that joins only a load younger than its limit. */
  startedAt: number
}

/**
 * One load per key at a time on this instance: a miss that finds a load of its key running waits for it (and shares
 * its value or its rejection) instead of calling the loader again.
 *
 * The Map holds each load through a holder emptied as the load settles, not the load itself: a long-lived Map's
 * table is in the old generation, V8 allocates the table that replaces it on a rehash (every few dozen loads) there
 * too, and the replaced one still holds the loads that were running. Until a full collection frees it, young-generation
 * collections would take those loads and the values they resolved with as alive and promote them, a Redis hit's
 * decoded page each.
 */
export class SingleFlight<T> {
  readonly #running = new Map<string, Holder<T>>()
  readonly #onCoalesced: () => void
  readonly #sameAs: (key: string, began: number, stamp: number) => boolean

  /**
   * `sameAs` says whether a caller at `stamp` may share a load of `key` begun at `began`; by default, only at the
   * same stamp.
   */
  constructor (onCoalesced: () => void, sameAs: (key: string, began: number, stamp: number) => boolean = (_key, began, stamp) => began === stamp) {
    this.#onCoalesced = onCoalesced
    this.#sameAs = sameAs
  }

  has (key: string): boolean {
    return this.#running.has(key)
  }

  /** The load of `key` running now, if any. */
  running (key: string): Promise<T> | undefined {
    return this.#running.get(key)?.load
  }

  /**
   * The load of `key` running now if its stamp is the same as `stamp` (`sameAs`, see the constructor) and it began
   * less than `maxAgeMs` ago, counted as coalesced. A caller whose stamp is not the same (a change it must see came
   * after that load began) starts a load of its own, as does one that would get too little of its own budget from a
   * load that has run long.
   */
  join (key: string, stamp: number, maxAgeMs = Number.POSITIVE_INFINITY): Promise<T> | undefined {
    const running = this.#running.get(key)
    if (running?.load === undefined || !this.#sameAs(key, running.stamp, stamp)) return undefined
    if (maxAgeMs !== Number.POSITIVE_INFINITY && performance.now() - running.startedAt >= maxAgeMs) return undefined
    this.#onCoalesced()
    return running.load
  }

  /**
   * Joins the load of `key` that is running with the same stamp as `stamp` (see `join`), or starts `load`. A load
   * started over a running one is the one later callers join; the older one still answers its own callers.
   */
  run (key: string, load: () => Promise<T>, stamp = 0, maxAgeMs = Number.POSITIVE_INFINITY): Promise<T> {
    const running = this.join(key, stamp, maxAgeMs)
    if (running) return running
    const holder: Holder<T> = { load: undefined, stamp, startedAt: maxAgeMs === Number.POSITIVE_INFINITY ? 0 : performance.now() }
    const started = this.#settled(key, holder, load())
    holder.load = started
    this.#running.set(key, holder)
    return started
  }

  // An async function, not `.finally()`: a Redis hit goes through here, and `.finally()` costs it two promises more.
  async #settled (key: string, holder: Holder<T>, load: Promise<T>): Promise<T> {
    try {
      return await load
    } finally {
      holder.load = undefined
      if (this.#running.get(key) === holder) this.#running.delete(key)
    }
  }
}
