import { LRUCache } from 'lru-cache'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'

/**
 * The in-process store: the same exact sliding-window log as the Redis store, one array of timestamps per key,
 * keys bounded by an LRU (a key evicted was the least recently seen one; it restarts empty).
 */
export class MemoryStore implements RateLimitStore {
  readonly #logs: LRUCache<string, number[]>
  readonly #now: () => number

  constructor (options: { maxKeys?: number, now?: () => number } = {}) {
    this.#logs = new LRUCache({ max: options.maxKeys ?? 100_000 })
    this.#now = options.now ?? Date.now
  }

  /** Whether a count of `key` is kept. */
  has (key: string): boolean {
    return this.#logs.has(key)
  }

  /** Starts `key`, which has no count here, with `count` requests made at `at`. */
  seed (key: string, count: number, at: number, windowMs: number): void {
    this.#logs.set(key, new Array<number>(count).fill(at), { ttl: windowMs })
  }

  clear (): void {
    this.#logs.clear()
  }

  async check ({ keys, policies, cost, consume }: StoreCheck): Promise<PolicyResult[]> {
    const now = this.#now()
    const results: PolicyResult[] = []
    const logs: number[][] = []
    let allowed = true
    keys.forEach((key, i) => {
      const policy = policies[i]
      if (!policy) return
      const log = (this.#logs.get(key) ?? []).filter((t) => t > now - policy.windowMs)
      logs.push(log)
      const count = log.length
      const ok = count + cost <= policy.limit
      if (!ok) allowed = false
      const needed = count + cost - policy.limit
      const retryAfterMs = ok ? 0 : cost > policy.limit ? policy.windowMs : (log[needed - 1] as number) + policy.windowMs - now
      // Reset: when the whole quota is back, one window after the newest request (as the Redis store reports it).
      results.push({ policy, allowed: ok, remaining: Math.max(0, policy.limit - count), resetMs: count === 0 ? 0 : (log[count - 1] as number) + policy.windowMs - now, retryAfterMs })
    })
    keys.forEach((key, i) => {
      const log = logs[i] as number[]
      const result = results[i] as PolicyResult
      if (allowed && consume) {
        for (let c = 0; c < cost; c++) log.push(now)
        result.remaining = Math.max(0, result.policy.limit - log.length)
        result.resetMs = result.policy.windowMs
      }
      if (log.length > 0) this.#logs.set(key, log, { ttl: result.policy.windowMs })
      else this.#logs.delete(key)
    })
    return results
  }
}
