import { LRUCache } from 'lru-cache'
import type { MemoryStore } from './memory-store.js'
import type { RateLimitPolicy } from './policies.js'
import type { PolicyResult } from './store.js'

interface Counted {
  used: number
  at: number
}

/** What this instance admitted of a key in fallback and the store does not know of: when, and under which policy. */
export interface Owed {
  key: string
  policy: RateLimitPolicy
  times: number[]
}

/**
 * Carries a key's count across the start and the end of a store outage, which the fallback's own counts and the
 * store's do not see of each other. Into the fallback: the count the store last gave for the key (the whole
 * fleet's), of which what is left is shared between the live instances, so a key is not started from zero. Out of
 * it: what this instance admitted in fallback, charged to the store with the key's next request there.
 */
export class Handover {
  readonly #counted: LRUCache<string, Counted>
  readonly #admitted: LRUCache<string, Owed>

  constructor (maxKeys: number) {
    this.#counted = new LRUCache({ max: maxKeys })
    this.#admitted = new LRUCache({ max: maxKeys })
  }

  /** The store answered: each key's count (every instance's) as of `now`, kept in place, no object per request. */
  counted (keys: string[], results: PolicyResult[], now: number): void {
    for (let i = 0; i < results.length; i++) {
      const result = results[i] as PolicyResult
      const used = result.policy.limit - result.remaining
      const key = keys[i] as string
      const known = this.#counted.get(key)
      if (known === undefined) this.#counted.set(key, { used, at: now })
      else {
        known.used = used
        known.at = now
      }
    }
  }

  /**
   * Before `key` is decided in fallback, when the fallback holds no count of it: starts it with what the store last
   * counted, so that this instance admits its share of what the limit leaves (rounded down), not of the whole limit.
   * The requests it stands for are dated when the store counted them, so they leave the window no earlier than
   * those did.
   */
  seed (fallback: MemoryStore, key: string, policy: RateLimitPolicy, share: RateLimitPolicy, live: number, now: number): void {
    const known = this.#counted.get(key)
    if (known === undefined || known.at <= now - policy.windowMs || fallback.has(key)) return
    const left = Math.max(0, policy.limit - known.used)
    const taken = share.limit - Math.floor(left / Math.max(1, live))
    if (taken > 0) fallback.seed(key, taken, known.at, policy.windowMs)
  }

  /** The fallback admitted a request: owed to the store. */
  admitted (keys: string[], policies: RateLimitPolicy[], cost: number, now: number): void {
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string
      let owed = this.#admitted.get(key)
      if (owed === undefined) this.#admitted.set(key, owed = { key, policy: policies[i] as RateLimitPolicy, times: [] })
      for (let c = 0; c < cost; c++) owed.times.push(now)
    }
  }

  /** Whether anything is owed. */
  get owing (): boolean {
    return this.#admitted.size > 0
  }

  /** What this instance admitted in fallback for these keys, within their windows, not yet charged: the most of any. */
  owed (keys: string[], policies: RateLimitPolicy[], now: number): number {
    if (this.#admitted.size === 0) return 0
    let most = 0
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string
      const owed = this.#admitted.get(key)
      if (owed === undefined) continue
      const live = liveCount(owed.times, now - (policies[i] as RateLimitPolicy).windowMs)
      if (live === 0) this.#admitted.delete(key)
      else if (live > most) most = live
    }
    return most
  }

  /** Everything owed within its window, taken out (to charge it to the store; what the store refuses is given back). */
  take (now: number): Owed[] {
    const all: Owed[] = []
    for (const owed of this.#admitted.values()) {
      const since = now - owed.policy.windowMs
      const times = owed.times.filter((t) => t > since)
      if (times.length > 0) all.push({ ...owed, times })
    }
    this.#admitted.clear()
    return all
  }

  /** A charge the store did not take: owed again, beside what was admitted in fallback meanwhile. */
  giveBack (owed: Owed): void {
    const now = this.#admitted.get(owed.key)
    if (now === undefined) this.#admitted.set(owed.key, owed)
    else now.times = [...owed.times, ...now.times]
  }

  /**
   * The store took what was owed with a request: forgotten here, and so is the fallback's count of the keys, so that
   * a later outage starts them from the store's count, which now holds it.
   */
  charged (fallback: MemoryStore, keys: string[]): void {
    for (const key of keys) {
      this.#admitted.delete(key)
      fallback.forget(key)
    }
  }
}

function liveCount (times: number[], since: number): number {
  let live = 0
  for (const t of times) if (t > since) live++
  return live
}
