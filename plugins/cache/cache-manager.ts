import type { RedisClient } from '../redis/index.js'
import { CircuitBreaker, type BreakerState } from '../redis/index.js'
import { decode, encode, stateToken, tombstone, type Envelope } from './codec.js'
import { CacheErrors } from './errors.js'
import { escapeGlob, globToRegExp } from './glob.js'
import { InvalidationBus, type Invalidation } from './invalidation-bus.js'
import { LocalTier, type LocalEntry } from './local-tier.js'
import { resolveCacheOptions, type CacheOptions, type GetOrSetOptions, type ResolvedCacheOptions } from './options.js'
import { RedisTier } from './redis-tier.js'
import { CacheCounters, snapshot, type CacheStats } from './stats.js'
import { Warming } from './warming.js'

export type CacheSource = 'local' | 'redis' | 'loader' | 'stale'

export type { GetOrSetOptions }

export interface SetOptions {
  tags?: string[]
}

interface Change {
  seq: number
  keys?: Set<string>
  patterns?: RegExp[]
  tags?: string[]
  all?: boolean
}

const HISTORY = 1024

/**
 * A two-tier cache: a bounded in-process LRU in front of Redis, kept coherent across instances by an invalidation
 * bus. Every read path coalesces concurrent misses; Redis failures never reach the caller (the cache degrades to
 * local-only and recovers by itself). Without a Redis client it runs local-only behind the same API.
 */
export class CacheManager {
  readonly options: ResolvedCacheOptions
  readonly #local: LocalTier
  readonly #tier: RedisTier | undefined
  readonly #bus: InvalidationBus | undefined
  readonly #breaker: CircuitBreaker | undefined
  readonly #warming: Warming | undefined
  readonly #stats = new CacheCounters()
  readonly #inflight = new Map<string, Promise<{ value: unknown, source: CacheSource }>>()
  readonly #tagGens = new Map<string, number>()
  readonly #history: Change[] = []
  #pending: Invalidation[] = []
  #pendingOverflow = false
  #seq = 0
  #closed = false

  constructor (redis: RedisClient | undefined, options: CacheOptions = {}) {
    this.options = resolveCacheOptions(options)
    const o = this.options
    this.#local = new LocalTier(o.localMaxEntries, o.localMaxBytes, () => { this.#stats.evictions++ })
    if (!redis) return
    this.#breaker = new CircuitBreaker(o.breakerThreshold, o.breakerCooldownMs, (state) => this.#onBreaker(state))
    this.#tier = new RedisTier(redis, o.redisTimeoutMs, this.#breaker, this.#stats)
    this.#bus = new InvalidationBus(redis, this.#tier, this.#stats, {
      channel: `${o.prefix}__invalidate`,
      instanceId: o.instanceId,
      ackTimeoutMs: o.ackTimeoutMs,
      onInvalidation: (inv) => this.#apply(inv),
      onLink: (up) => this.#onLink(up),
      log: (msg, err) => o.logger?.warn({ err: { message: (err as Error | undefined)?.message } }, msg)
    })
    if (o.hotKeysMax > 0) {
      this.#warming = new Warming(this.#tier, o, {
        fill: async (keys) => {
          const stored = { count: 0 }
          await this.#readRedis(keys, this.#seq, stored)
          return stored.count
        },
        rerun: async (key, { loader, options }) => { await this.getOrSetWithSource(key, loader, options) },
        refresh: (key, { loader, options }, windowMs) => this.#refresh(key, loader, options, windowMs),
        lost: () => this.#flush()
      })
    }
  }

  /** Waits until the invalidation bus is subscribed (immediately true when local-only). */
  async ready (timeoutMs = 2000): Promise<boolean> {
    return this.#bus ? this.#bus.ready(timeoutMs) : true
  }

  /**
   * Fills the local tier with the fleet's hottest entries from Redis, bounded by warmMaxEntries and warmTimeoutMs;
   * resolves with how many. Call after `ready()`: an entry copied before the bus listens could miss its invalidation.
   */
  async warm (): Promise<number> {
    if (!this.#warming || (this.#bus && !this.#bus.up)) return 0
    const warmed = await this.#warming.warm()
    this.#stats.warmed += warmed
    return warmed
  }

  /** Flushes this instance's hot-key counts now and learns the fleet's hot set (otherwise every hotKeysIntervalMs). */
  async flushHotKeys (): Promise<void> {
    await this.#warming?.tick()
  }

  async get<T = unknown> (key: string): Promise<T | undefined> {
    const local = this.#localFresh(key)
    if (local) return local.value as T
    const [found] = await this.#readRedis([key], this.#seq)
    return found?.value as T | undefined
  }

  /** The fresh in-process value of `key`, synchronously; undefined sends the caller to `getOrSet`. */
  peek<T = unknown> (key: string): T | undefined {
    return this.#localHit(key)?.value as T | undefined
  }

  async getOrSet<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<T> {
    const local = this.#localHit(key)
    if (local) {
      this.#warming?.hitWithLoader(key, loader, options)
      return local.value as T
    }
    return (await this.getOrSetWithSource(key, loader, options)).value
  }

  /** `getOrSet` under the name other caches use. */
  wrap<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<T> {
    return this.getOrSet(key, loader, options)
  }

  /** Like getOrSet, and says where the value came from: local, redis, loader or stale (loader failed, grace value). */
  async getOrSetWithSource<T> (key: string, loader: () => Promise<T>, options: GetOrSetOptions = {}): Promise<{ value: T, source: CacheSource }> {
    if (this.#closed) throw new CacheErrors.CACHE_CLOSED()
    const hit = this.#localHit(key)
    if (hit) {
      this.#warming?.hitWithLoader(key, loader, options)
      return { value: hit.value as T, source: 'local' }
    }
    this.#warming?.miss(key, loader, options)
    let stale: LocalEntry | undefined
    if (this.options.localEnabled) {
      this.#stats.localMisses++
      stale = this.#local.getStale(key)
      if (stale && !this.#tagsCurrent(stale.tags)) stale = undefined
    }
    const running = this.#inflight.get(key)
    if (running) {
      this.#stats.coalesced++
      return running as Promise<{ value: T, source: CacheSource }>
    }
    const load = this.#load(key, loader, options, stale).finally(() => this.#inflight.delete(key))
    this.#inflight.set(key, load)
    return load as Promise<{ value: T, source: CacheSource }>
  }

  /** Refresh-ahead's reload: coalesced with misses of the same key, written like any fill. */
  async #refresh (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, windowMs: number): Promise<void> {
    if (this.#closed || this.#inflight.has(key)) return
    const load = this.#load(key, loader, options, undefined, windowMs).finally(() => this.#inflight.delete(key))
    this.#inflight.set(key, load)
    await load
  }

  /** With `refreshWithinMs`, a Redis entry with that much freshness left or less is reloaded instead of served. */
  async #load (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, localStale: LocalEntry | undefined, refreshWithinMs?: number): Promise<{ value: unknown, source: CacheSource }> {
    const startSeq = this.#seq
    const full = this.#full(key)
    const ttlMs = (options.ttl ?? this.options.ttl) * 1000
    const graceMs = (options.grace ?? this.options.grace) * 1000
    let stale: { value: unknown } | undefined = localStale
    let token = stateToken(undefined)
    let redisRead = false
    if (this.#tier) {
      try {
        const [hit] = await this.#tier.getMany([full])
        redisRead = true
        token = stateToken(hit?.bytes)
        const envelope = hit ? this.#decode(hit.bytes) : undefined
        if (hit && envelope && this.#tagsCurrent(envelope.t, await this.#currentGens(Object.keys(envelope.t ?? {})))) {
          const freshMs = hit.pttl - envelope.g
          if (freshMs > (refreshWithinMs ?? 0)) {
            this.#stats.redisHits++
            this.#storeLocal(key, envelope.v, envelope.t, freshMs, hit.pttl, hit.bytes.length, startSeq, options.ttl)
            if (refreshWithinMs === undefined) this.#warming?.redisHit(key, freshMs, options.ttl)
            return { value: envelope.v, source: 'redis' }
          }
          stale ??= { value: envelope.v }
        }
        if (refreshWithinMs === undefined) this.#stats.redisMisses++
      } catch {
        // Counted by the tier; the loader answers instead.
      }
    }
    const gens = options.tags && options.tags.length > 0 ? await this.#currentGens(options.tags) : undefined
    this.#stats.loaderCalls++
    if (refreshWithinMs !== undefined) this.#stats.refreshes++
    const started = performance.now()
    let value: unknown
    try {
      value = await loader()
    } catch (error) {
      this.#stats.loaderErrors++
      if (stale) {
        this.#stats.staleServes++
        return { value: stale.value, source: 'stale' }
      }
      throw error
    } finally {
      this.#stats.loaderLatency.add(performance.now() - started)
    }
    if (options.cacheIf && !options.cacheIf(value)) {
      this.#stats.uncachedLoads++
      return { value, source: 'loader' }
    }
    const payload = encode({ v: value, g: graceMs, ...(gens ? { t: gens } : {}) })
    if (this.#changedSince(key, options.tags, startSeq)) {
      this.#stats.uncachedLoads++
      return { value, source: 'loader' }
    }
    if (this.#tier && redisRead) {
      try {
        if (!(await this.#tier.fill(full, token, payload, ttlMs + graceMs))) {
          // A delete landed between our read and our write: the value may predate it.
          this.#stats.uncachedLoads++
          return { value, source: 'loader' }
        }
      } catch {
        // Redis failed after the read: keep the value locally only.
      }
    }
    this.#storeLocal(key, value, gens, ttlMs, ttlMs + graceMs, payload.length, startSeq, options.ttl)
    return { value, source: 'loader' }
  }

  async set (key: string, value: unknown, ttlSeconds?: number, options: SetOptions = {}): Promise<void> {
    await this.mset([[key, value]], ttlSeconds, options)
  }

  /** Writes several entries in one pipeline (chunked), then invalidates them on the other instances in one message. */
  async mset (entries: Array<[string, unknown]> | Record<string, unknown>, ttlSeconds?: number, options: SetOptions = {}): Promise<void> {
    const list = Array.isArray(entries) ? entries : Object.entries(entries)
    const ttlMs = (ttlSeconds ?? this.options.ttl) * 1000
    const graceMs = this.options.grace * 1000
    const gens = options.tags && options.tags.length > 0 ? await this.#currentGens(options.tags) : undefined
    const encoded = list.map(([key, value]) => ({ local: key, key: this.#full(key), value, payload: encode({ v: value, g: graceMs, ...(gens ? { t: gens } : {}) }), pxMs: ttlMs + graceMs }))
    const keys = encoded.map((e) => e.local)
    this.#record({ keys })
    if (this.#tier) {
      try {
        await this.#tier.setMany(encoded)
      } catch {
        this.#queue({ keys })
      }
    }
    for (const e of encoded) this.#storeLocal(e.local, e.value, gens, ttlMs, ttlMs + graceMs, e.payload.length, this.#seq, ttlSeconds)
    await this.#publish({ keys })
  }

  async mget<T = unknown> (keys: string[]): Promise<Array<T | undefined>> {
    const out = new Array<T | undefined>(keys.length)
    const missing: Array<{ i: number, key: string }> = []
    keys.forEach((key, i) => {
      const local = this.#localFresh(key)
      if (local) out[i] = local.value as T
      else missing.push({ i, key })
    })
    if (missing.length > 0) {
      const found = await this.#readRedis(missing.map((m) => m.key), this.#seq)
      missing.forEach((m, j) => { out[m.i] = found[j]?.value as T | undefined })
    }
    return out
  }

  async del (keys: string | string[]): Promise<void> {
    await this.invalidate({ keys: Array.isArray(keys) ? keys : [keys] })
  }

  /** Deletes every key matching a Redis glob (after the prefix) by SCAN and UNLINK. Build patterns with `cachePattern`. */
  async deletePattern (pattern: string): Promise<void> {
    await this.invalidate({ patterns: [pattern] })
  }

  /** Makes every entry tagged with one of `tags` stale on every instance: one INCR per tag, whatever the entry count. */
  async invalidateTags (tags: string[]): Promise<void> {
    await this.invalidate({ tags })
  }

  /** Keys, patterns and tags in one go, with one message to the other instances. */
  async invalidate (what: { keys?: string[], patterns?: string[], tags?: string[] }): Promise<void> {
    const keys = what.keys ?? []
    const patterns = what.patterns ?? []
    const tags = what.tags ?? []
    const tagGens: Record<string, number> = {}
    if (tags.length > 0) {
      let next: number[] | undefined
      if (this.#tier) next = await this.#tier.incr(tags.map((t) => this.#tagKey(t))).catch(() => undefined)
      tags.forEach((t, i) => {
        const gen = Math.max(next?.[i] ?? 0, (this.#tagGens.get(t) ?? 0) + 1)
        tagGens[t] = gen
        this.#tagGens.set(t, gen)
      })
      if (this.#tier && !next) this.#queue({ tags: Object.fromEntries(tags.map((t) => [t, 0])) })
    }
    const invalidation: Invalidation = {
      ...(keys.length > 0 ? { keys } : {}),
      ...(patterns.length > 0 ? { patterns } : {}),
      ...(tags.length > 0 ? { tags: tagGens } : {})
    }
    this.#apply(invalidation)
    if (this.#tier) {
      try {
        await this.#invalidateRedis({ keys, patterns })
      } catch {
        this.#queue({ keys, patterns })
      }
    }
    await this.#publish(invalidation)
  }

  getStats (): CacheStats {
    return snapshot(this.#stats, {
      localEnabled: this.options.localEnabled,
      entries: this.#local.size,
      bytes: this.#local.bytes,
      maxEntries: this.#local.maxEntries,
      maxBytes: this.#local.maxBytes,
      hasRedis: this.#tier !== undefined,
      breaker: this.#breaker?.state ?? 'none',
      connected: this.#tier ? this.#tier.client.status === 'ready' && (this.#bus?.up ?? false) : false,
      ...(this.#warming?.stats() ?? { reruns: 0, hotKeys: 0, tracked: 0 })
    })
  }

  /** Ms the in-process copy of `key` has left (0 when absent); for operators and tests. */
  localTtl (key: string): number {
    return this.#local.remainingTtl(key)
  }

  /** Stops the invalidation bus; the Redis client belongs to the caller. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#local.clear()
    await this.#warming?.close()
    await this.#bus?.close()
  }

  /** The Redis key; the local tier, the history and bus messages use keys without the prefix. */
  #full (key: string): string {
    return this.options.prefix + key
  }

  #tagKey (tag: string): string {
    return `${this.options.prefix}__tag:${tag}`
  }

  /** A fresh local entry (counted as a hit), without counting a miss: the caller goes on to the next tier. */
  #localHit (key: string): { value: unknown } | undefined {
    if (this.#closed || !this.options.localEnabled) return undefined
    const entry = this.#local.get(key)
    if (entry !== undefined && (entry.tags === undefined || this.#tagsCurrent(entry.tags))) {
      this.#stats.localHits++
      this.#warming?.hit(key, entry)
      return entry
    }
    return undefined
  }

  #localFresh (key: string): { value: unknown } | undefined {
    const hit = this.#localHit(key)
    if (!hit && this.options.localEnabled) this.#stats.localMisses++
    if (!hit) this.#warming?.touch(key)
    return hit
  }

  /** With `warming`: not a read (no hits or misses counted); counts the local copies made instead. */
  async #readRedis (keys: string[], startSeq: number, warming?: { count: number }): Promise<Array<{ value: unknown } | undefined>> {
    if (!this.#tier) return keys.map(() => undefined)
    let hits
    try {
      hits = await this.#tier.getMany(keys.map((k) => this.#full(k)))
    } catch {
      return keys.map(() => undefined)
    }
    const out: Array<{ value: unknown } | undefined> = []
    const envelopes = hits.map((hit) => (hit ? this.#decode(hit.bytes) : undefined))
    // The generations of every tag of the batch in one go: warming reads hundreds of tagged entries at a time.
    const tags = [...new Set(envelopes.flatMap((e) => Object.keys(e?.t ?? {})))]
    const known = tags.length > 0 ? await this.#currentGens(tags) : undefined
    for (const [i, hit] of hits.entries()) {
      const envelope = envelopes[i]
      const fresh = hit && envelope && hit.pttl - envelope.g > 0 && this.#tagsCurrent(envelope.t, known)
      if (!hit || !envelope || !fresh) {
        if (!warming) this.#stats.redisMisses++
        out.push(undefined)
        continue
      }
      const key = keys[i] as string
      if (!warming) {
        this.#stats.redisHits++
        this.#warming?.redisHit(key, hit.pttl - envelope.g)
      }
      if (this.#storeLocal(key, envelope.v, envelope.t, hit.pttl - envelope.g, hit.pttl, hit.bytes.length, startSeq) && warming) warming.count++
      out.push({ value: envelope.v })
    }
    return out
  }

  #decode (bytes: Buffer): Envelope | undefined {
    const envelope = decode(bytes)
    if (!envelope && bytes[1] !== 0x00) this.#stats.decodeErrors++
    return envelope
  }

  /** A local copy stays fresh at most localTtl and is gone no later than the Redis entry. True when stored. */
  #storeLocal (key: string, value: unknown, tags: Record<string, number> | undefined, freshMs: number, totalMs: number, size: number, startSeq: number, ttlSeconds?: number): boolean {
    if (!this.options.localEnabled || this.#changedSince(key, tags ? Object.keys(tags) : undefined, startSeq)) return false
    const fresh = Math.min(freshMs, this.options.localTtl * 1000)
    const lifetime = Math.min(totalMs, fresh + (totalMs - freshMs))
    const refreshAt = this.#warming?.refreshAt(key, freshMs, ttlSeconds)
    this.#local.set(key, { value, staleUntil: Date.now() + lifetime, tags, ...(refreshAt !== undefined ? { refreshAt } : {}) }, fresh, size)
    return true
  }

  #tagsCurrent (tags: Record<string, number> | undefined, known?: Record<string, number>): boolean {
    if (!tags) return true
    for (const [tag, gen] of Object.entries(tags)) {
      const current = known?.[tag] ?? this.#tagGens.get(tag)
      if (current === undefined) return false
      if (gen < current) return false
      if (gen > current) this.#tagGens.set(tag, gen)
    }
    return true
  }

  /** Generations of `tags`, asking Redis for the ones this instance has not seen; bus messages keep them current. */
  async #currentGens (tags: string[]): Promise<Record<string, number>> {
    const unknown = tags.filter((t) => !this.#tagGens.has(t))
    if (unknown.length > 0) {
      let fetched: number[] | undefined
      if (this.#tier) fetched = await this.#tier.getNumbers(unknown.map((t) => this.#tagKey(t))).catch(() => undefined)
      // Without Redis, an unknown tag starts at 0; reconnecting flushes these guesses.
      unknown.forEach((t, i) => this.#tagGens.set(t, Math.max(this.#tagGens.get(t) ?? 0, fetched?.[i] ?? 0)))
    }
    return Object.fromEntries(tags.map((t) => [t, this.#tagGens.get(t) ?? 0]))
  }

  /** Applies an invalidation to this instance (own or received) and remembers it for fills still in flight. */
  #apply (inv: Invalidation): void {
    const patterns = inv.patterns?.map(globToRegExp)
    for (const key of inv.keys ?? []) this.#local.delete(key)
    for (const re of patterns ?? []) this.#local.deleteMatching(re)
    for (const [tag, gen] of Object.entries(inv.tags ?? {})) this.#tagGens.set(tag, Math.max(this.#tagGens.get(tag) ?? 0, gen))
    this.#record({ ...(inv.keys ? { keys: inv.keys } : {}), ...(patterns ? { patterns } : {}), ...(inv.tags ? { tags: Object.keys(inv.tags) } : {}) })
  }

  #record (change: { keys?: string[], patterns?: RegExp[], tags?: string[], all?: boolean }): void {
    this.#history.push({ seq: ++this.#seq, ...(change.keys ? { keys: new Set(change.keys) } : {}), ...(change.patterns ? { patterns: change.patterns } : {}), ...(change.tags ? { tags: change.tags } : {}), ...(change.all ? { all: true } : {}) })
    if (this.#history.length > HISTORY) this.#history.shift()
  }

  /** True when an invalidation that touches `key` arrived after `seq`: a value read before it must not be cached. */
  #changedSince (key: string, tags: string[] | undefined, seq: number): boolean {
    if (seq === this.#seq) return false
    const oldest = this.#history[0]
    if (!oldest || oldest.seq > seq + 1) return true
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const c = this.#history[i] as Change
      if (c.seq <= seq) break
      if (c.all || c.keys?.has(key) || c.patterns?.some((re) => re.test(key)) || (tags && c.tags?.some((t) => tags.includes(t)))) return true
    }
    return false
  }

  async #invalidateRedis (what: { keys?: string[], patterns?: string[] }): Promise<void> {
    const tier = this.#tier as RedisTier
    if (what.keys && what.keys.length > 0) await tier.bury(what.keys.map((k) => this.#full(k)), tombstone, this.options.tombstoneTtl * 1000)
    for (const pattern of what.patterns ?? []) await tier.deleteMatching(escapeGlob(this.options.prefix) + pattern)
  }

  async #publish (inv: Invalidation): Promise<void> {
    if (!this.#bus || !this.#tier?.available) return
    await this.#bus.publish(inv).catch(() => {})
  }

  /** Remembers an invalidation Redis could not take, to replay when it is back. */
  #queue (inv: Invalidation): void {
    if (this.#pending.length >= this.options.maxPendingInvalidations) {
      this.#pendingOverflow = true
      this.#pending = []
      return
    }
    this.#pending.push(inv)
  }

  async #replay (): Promise<void> {
    const pending = this.#pending
    const overflow = this.#pendingOverflow
    this.#pending = []
    this.#pendingOverflow = false
    try {
      if (overflow) await this.#invalidateRedis({ patterns: ['*'] })
      for (const inv of pending) {
        await this.#invalidateRedis(inv)
        const tags = Object.keys(inv.tags ?? {})
        if (tags.length > 0) await (this.#tier as RedisTier).incr(tags.map((t) => this.#tagKey(t)))
      }
    } catch {
      this.#pending = pending.concat(this.#pending)
      this.#pendingOverflow ||= overflow
      // Redis may be back for the bus but not yet for commands (breaker cooling down): try again shortly.
      if (!this.#closed) setTimeout(() => { void this.#replay() }, 250).unref()
    }
  }

  /** A local tier must not outlive a lost link: invalidations may have been missed. */
  #flush (): void {
    this.#local.clear()
    this.#tagGens.clear()
    this.#record({ all: true })
    this.#stats.localFlushes++
  }

  #onLink (up: boolean): void {
    this.#flush()
    if (up) this.#warming?.linkUp()
    if (up && (this.#pending.length > 0 || this.#pendingOverflow)) void this.#replay()
  }

  #onBreaker (state: BreakerState): void {
    if (state === 'half_open') return
    this.#flush()
    if (state === 'closed') this.#warming?.linkUp()
    if (state === 'closed' && (this.#pending.length > 0 || this.#pendingOverflow)) void this.#replay()
  }
}

/** Creates a cache over a Redis client (standalone or cluster), or local-only when `redis` is undefined. */
export function createCacheManager (redis: RedisClient | undefined, options: CacheOptions = {}): CacheManager {
  return new CacheManager(redis, options)
}
