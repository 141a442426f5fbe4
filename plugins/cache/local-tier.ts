import { LRUCache } from 'lru-cache'
import type { RegisteredLoader } from './loaders.js'

export interface LocalEntry {
  value: unknown
  /** Epoch ms after which even a stale copy must not be served (its grace, never past the Redis TTL). */
  staleUntil: number
  tags: Record<string, number> | undefined
  /** The key's loader and refresh schedule, which a read updates; unset when refresh-ahead is off or the loader unknown. */
  ahead?: RegisteredLoader
}

/**
 * The in-process tier: bounded in entries and bytes, least recently used evicted first, expiry checked lazily.
 * The LRU's own TTL is the fresh period (its clock is cached, so a hit reads no system clock); a stale entry stays
 * until evicted so it can be served within its grace when a loader fails.
 */
export class LocalTier {
  readonly #lru: LRUCache<string, LocalEntry>
  readonly maxEntries: number
  readonly maxBytes: number

  constructor (maxEntries: number, maxBytes: number, onEvict: () => void) {
    this.maxEntries = maxEntries
    this.maxBytes = maxBytes
    this.#lru = new LRUCache<string, LocalEntry>({
      max: maxEntries,
      maxSize: maxBytes,
      ttlAutopurge: false,
      allowStale: false,
      noDeleteOnStaleGet: true,
      updateAgeOnGet: false,
      dispose: (_value, _key, reason) => { if (reason === 'evict') onEvict() }
    })
  }

  /** A fresh entry, or undefined. */
  get (key: string): LocalEntry | undefined {
    return this.#lru.get(key)
  }

  /** An entry past its fresh period but within its grace. */
  getStale (key: string): LocalEntry | undefined {
    const entry = this.#lru.get(key, { allowStale: true })
    return entry !== undefined && entry.staleUntil > Date.now() ? entry : undefined
  }

  /** `freshMs` is the fresh period; `size` the encoded bytes. */
  set (key: string, entry: LocalEntry, freshMs: number, size: number): void {
    if (freshMs <= 0 || size > this.maxBytes) {
      this.#lru.delete(key)
      return
    }
    this.#lru.set(key, entry, { ttl: Math.ceil(freshMs), size: Math.max(1, size) })
  }

  delete (key: string): void {
    this.#lru.delete(key)
  }

  deleteMatching (re: RegExp): number {
    let n = 0
    for (const key of this.#lru.keys()) {
      if (re.test(key)) {
        this.#lru.delete(key)
        n++
      }
    }
    return n
  }

  clear (): void {
    this.#lru.clear()
  }

  remainingTtl (key: string): number {
    return this.#lru.getRemainingTTL(key)
  }

  get size (): number {
    return this.#lru.size
  }

  get bytes (): number {
    return this.#lru.calculatedSize
  }
}
