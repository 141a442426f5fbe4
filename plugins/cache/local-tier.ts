import { LRUCache } from 'lru-cache'

export interface LocalEntry {
  value: unknown
  /** Epoch ms until which the entry is fresh; after it, it is stale until the LRU drops it. */
  freshUntil: number
  tags: Record<string, number> | undefined
}

/** The in-process tier: bounded in entries and bytes, least recently used evicted first, expiry checked lazily. */
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
      updateAgeOnGet: false,
      dispose: (_value, _key, reason) => { if (reason === 'evict') onEvict() }
    })
  }

  get (key: string): LocalEntry | undefined {
    return this.#lru.get(key)
  }

  /** `ttlMs` is when the entry must be gone (fresh plus grace, never past the Redis TTL); `size` its encoded bytes. */
  set (key: string, entry: LocalEntry, ttlMs: number, size: number): void {
    if (ttlMs <= 0 || size > this.maxBytes) {
      this.#lru.delete(key)
      return
    }
    this.#lru.set(key, entry, { ttl: Math.ceil(ttlMs), size: Math.max(1, size) })
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
