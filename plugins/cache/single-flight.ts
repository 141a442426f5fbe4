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
  readonly #running = new Map<string, { load: Promise<T> | undefined }>()
  readonly #onCoalesced: () => void

  constructor (onCoalesced: () => void) {
    this.#onCoalesced = onCoalesced
  }

  has (key: string): boolean {
    return this.#running.has(key)
  }

  /** The load of `key` running now, if any. */
  running (key: string): Promise<T> | undefined {
    return this.#running.get(key)?.load
  }

  /** Joins the load of `key` that is running, or starts `load`. */
  run (key: string, load: () => Promise<T>): Promise<T> {
    const running = this.#running.get(key)?.load
    if (running) {
      this.#onCoalesced()
      return running
    }
    const holder: { load: Promise<T> | undefined } = { load: undefined }
    const started = load().finally(() => {
      holder.load = undefined
      this.#running.delete(key)
    })
    holder.load = started
    this.#running.set(key, holder)
    return started
  }
}
