/**
 * One load per key at a time on this instance: a miss that finds a load of its key running waits for it (and shares
 * its value or its rejection) instead of calling the loader again.
 */
export class SingleFlight<T> {
  readonly #running = new Map<string, Promise<T>>()
  readonly #onCoalesced: () => void

  constructor (onCoalesced: () => void) {
    this.#onCoalesced = onCoalesced
  }

  has (key: string): boolean {
    return this.#running.has(key)
  }

  /** Joins the load of `key` that is running, or starts `load`. */
  run (key: string, load: () => Promise<T>): Promise<T> {
    const running = this.#running.get(key)
    if (running) {
      this.#onCoalesced()
      return running
    }
    const started = load().finally(() => this.#running.delete(key))
    this.#running.set(key, started)
    return started
  }
}
