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
 * it: what this instance admitted in fallback, owed to the store until charged to it.
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
   * counted and what this instance still owes it, so that this instance admits its share of what the limit leaves
   * (rounded down), not of the whole limit. The requests the store counted are dated when it counted them, so they
   * leave the window no earlier than those did.
   */
  seed (fallback: MemoryStore, key: string, policy: RateLimitPolicy, share: RateLimitPolicy, live: number, now: number): void {
    if (fallback.has(key)) return
    const since = now - policy.windowMs
    const known = this.#counted.get(key)
    const owed = this.#admitted.get(key)?.times.filter((t) => t > since) ?? []
    const used = (known !== undefined && known.at > since ? known.used : 0) + owed.length
    if (used === 0) return
    const taken = share.limit - Math.floor(Math.max(0, policy.limit - used) / Math.max(1, live))
    if (taken > 0) fallback.seed(key, taken, known !== undefined && known.at > since ? known.at : now, policy.windowMs)
  }

  /** The fallback admitted a request: owed to the store. What left the window is dropped, so a key owes at most its share. */
  admitted (keys: string[], policies: RateLimitPolicy[], cost: number, now: number): void {
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string
      const policy = policies[i] as RateLimitPolicy
      let owed = this.#admitted.get(key)
      if (owed === undefined) this.#admitted.set(key, owed = { key, policy, times: [] })
      const since = now - policy.windowMs
      let expired = 0
      while (expired < owed.times.length && (owed.times[expired] as number) <= since) expired++
      if (expired > 0) owed.times.splice(0, expired)
      for (let c = 0; c < cost; c++) owed.times.push(now)
    }
  }

  /** Whether anything is owed. */
  get owing (): boolean {
    return this.#admitted.size > 0
  }

  /** Everything owed within its window, taken out to be charged (what the store cannot take is given back). */
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

  /** A charge the store could not take (it failed): owed again, beside what was admitted in fallback meanwhile. */
  giveBack (owed: Owed): void {
    const now = this.#admitted.get(owed.key)
    if (now === undefined) this.#admitted.set(owed.key, owed)
    else now.times = [...owed.times, ...now.times]
  }
}
