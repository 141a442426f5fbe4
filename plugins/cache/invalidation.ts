import { tombstone } from './codec.js'
import { fullKey, type CacheCore } from './core.js'
import { escapeGlob, globToRegExp } from './glob.js'
import type { Invalidation, InvalidationBus } from './invalidation-bus.js'
import type { RedisTier } from './redis-tier.js'
import { StuckInvalidations } from './stuck-invalidations.js'

/** The first retry of an invalidation Redis refused, and the longest wait between two (as docs/cache.md states). */
const RETRY_FIRST_MS = 100
/**
 * Keys and patterns the queue holds at most, whatever the number of invalidations: one of an import batch names a
 * thousand keys, and 10,000 of them would be ten million strings held through an outage. Past it, one flush of the
 * prefix is owed instead, as past maxPendingInvalidations.
 */
export const MAX_PENDING_KEYS = 100_000
const sizeOf = (inv: Invalidation): number => (inv.keys?.length ?? 0) + (inv.patterns?.length ?? 0)
export const RETRY_MAX_MS = 2000

export interface InvalidationRequest {
  keys?: string[]
  patterns?: string[]
  tags?: string[]
}

/**
 * Invalidation on every instance: applied here at once, written to Redis (tombstones, SCAN + UNLINK, one INCR per
 * tag), then published on the bus. What Redis could not take is queued (bounded) and retried, oldest first, until
 * Redis takes it.
 */
export class Invalidator {
  readonly #core: CacheCore
  readonly #bus: InvalidationBus | undefined
  #pending: Invalidation[] = []
  /** The keys and patterns of `#pending`. */
  #pendingKeys = 0
  #pendingOverflow = false
  #replaying = false
  #retry: NodeJS.Timeout | undefined
  #retryMs = RETRY_FIRST_MS
  readonly #stuck: StuckInvalidations

  constructor (core: CacheCore, bus: InvalidationBus | undefined) {
    this.#core = core
    this.#bus = bus
    this.#stuck = new StuckInvalidations(core.stats, core.options.logger, core.options.clock)
  }

  /** Invalidations (a flush of the prefix after an overflow counting one) waiting for Redis to take them. */
  get pendingCount (): number {
    return this.#pending.length + (this.#pendingOverflow ? 1 : 0)
  }

  async invalidate (what: InvalidationRequest): Promise<void> {
    const core = this.#core
    const keys = what.keys ?? []
    const patterns = what.patterns ?? []
    const tags = what.tags ?? []
    // Each tag's next generation as this instance sees it: raised here at once, and Redis's floor for the count.
    const floors = tags.map((t) => core.tags.next(t))
    // This instance's copies go before any round trip: no read here after the call began is served the old value
    // from memory while Redis takes its time (a hung Redis, its whole budget). A load begun before keeps the
    // generations it read first, so it stays stale. Applied again once Redis answered, for a copy read meanwhile.
    this.apply({ ...(keys.length > 0 ? { keys } : {}), ...(patterns.length > 0 ? { patterns } : {}), ...(tags.length > 0 ? { tags: Object.fromEntries(tags.map((t, i) => [t, floors[i] as number])) } : {}) })
    if (core.tier && !core.tier.cluster && patterns.length === 0) return this.#invalidateAtOnce(core.tier, keys, tags, floors)
    const tagGens: Record<string, number> = {}
    if (tags.length > 0) {
      let next: number[] | undefined
      let refusal: unknown
      if (core.tier) next = await core.tier.incr(tags.map((t) => core.tags.key(t)), floors).catch((error: unknown) => { refusal = error; return undefined })
      tags.forEach((t, i) => {
        const gen = Math.max(next?.[i] ?? 0, floors[i] as number)
        tagGens[t] = gen
        core.tags.raise(t, gen)
      })
      if (core.tier && !next) this.queue({ tags: Object.fromEntries(tags.map((t) => [t, 0])) }, refusal)
    }
    const invalidation: Invalidation = {
      ...(keys.length > 0 ? { keys } : {}),
      ...(patterns.length > 0 ? { patterns } : {}),
      ...(tags.length > 0 ? { tags: tagGens } : {})
    }
    // The keys and patterns went before the round trips (above); the tags take the generations Redis gave them.
    if (tags.length > 0) this.apply({ tags: tagGens })
    if (core.tier) {
      try {
        await this.#invalidateRedis({ keys, patterns })
      } catch (error) {
        this.queue({ keys, patterns }, error)
      }
      // A read while Redis took it (or refused it, before it was pending) copied the old value here: applied again,
      // now that Redis no longer holds it or reads skip Redis for these keys, so neither that copy nor a fill begun
      // meanwhile is served.
      this.apply({ ...(keys.length > 0 ? { keys } : {}), ...(patterns.length > 0 ? { patterns } : {}) })
    }
    await this.publish(invalidation)
  }

  /**
   * Keys and tags on a standalone Redis: the generations, the tombstones and the bus message in one round trip
   * (RedisTier.invalidate), then applied here; what Redis could not take is queued, as on the other path.
   */
  async #invalidateAtOnce (tier: RedisTier, keys: string[], tags: string[], floors: number[]): Promise<void> {
    const core = this.#core
    const outgoing = this.#bus && tier.available ? this.#bus.prepare(keys.length > 0 ? { keys } : {}) : undefined
    let refusal: unknown
    const done = await tier.invalidate({
      tags: tags.map((t, i) => ({ key: core.tags.key(t), name: t, floor: floors[i] as number })),
      buried: keys.map((k) => ({ key: fullKey(core, k), payload: tombstone() })),
      pxMs: core.options.tombstoneTtl * 1000,
      channel: outgoing?.channel ?? '',
      head: outgoing?.head ?? ''
    }).catch((error: unknown) => { refusal = error; return undefined })
    const tagGens: Record<string, number> = {}
    tags.forEach((t, i) => {
      const gen = Math.max(done?.gens[i] ?? 0, floors[i] as number)
      tagGens[t] = gen
      core.tags.raise(t, gen)
    })
    this.apply({ ...(keys.length > 0 ? { keys } : {}), ...(tags.length > 0 ? { tags: tagGens } : {}) })
    if (!done) {
      outgoing?.drop()
      this.queue({ keys, ...(tags.length > 0 ? { tags: Object.fromEntries(tags.map((t) => [t, 0])) } : {}) }, refusal)
      return
    }
    await outgoing?.sent(done.receivers).catch(() => {})
  }

  /** Applies an invalidation to this instance (own or received) and remembers it for fills still in flight. */
  apply (inv: Invalidation): void {
    const core = this.#core
    const patterns = inv.patterns?.map(globToRegExp)
    for (const key of inv.keys ?? []) core.local.delete(key)
    for (const re of patterns ?? []) core.local.deleteMatching(re)
    for (const [tag, gen] of Object.entries(inv.tags ?? {})) core.tags.raise(tag, gen)
    core.history.record({ ...(inv.keys ? { keys: inv.keys } : {}), ...(patterns ? { patterns } : {}), ...(inv.tags ? { tags: Object.keys(inv.tags) } : {}) })
  }

  async publish (inv: Invalidation): Promise<void> {
    if (!this.#bus || !this.#core.tier?.available) return
    await this.#bus.publish(inv).catch(() => {})
  }

  /**
   * Remembers an invalidation Redis could not take, and retries it until Redis takes it: a Redis that stays connected
   * but refuses writes (OOM under maxmemory, READONLY after a failover) never drops the link nor, with reads still
   * answered, opens the breaker, so waiting for either would leave it queued indefinitely. `cause` is what Redis
   * answered (counted and, once per stuck period, logged).
   */
  queue (inv: Invalidation, cause: unknown): void {
    if (this.#core.closed) {
      // Nothing retries once closed (a write under way when close() came): dropped at once, not counted as pending.
      this.#core.stats.invalidationsRefused++
      this.#core.pending.add(inv)
      this.#stuck.dropped(1)
      return
    }
    if (this.#pending.length >= this.#core.options.maxPendingInvalidations || this.#pendingKeys + sizeOf(inv) > MAX_PENDING_KEYS) {
      this.#pendingOverflow = true
      this.#pending = []
      this.#pendingKeys = 0
      this.#core.pending.overflow()
    } else {
      this.#pending.push(inv)
      this.#pendingKeys += sizeOf(inv)
      this.#core.pending.add(inv)
    }
    // A read of these keys begun before they were pending may have read the old value: once Redis takes this and
    // reads go there again, none of them may share that read (tier-reads.ts, readOne).
    this.#core.history.record(this.#pendingOverflow ? { all: true } : { ...(inv.keys ? { keys: inv.keys } : {}), ...(inv.patterns ? { patterns: inv.patterns.map(globToRegExp) } : {}) })
    this.#stuck.refused(cause, this.pendingCount)
    this.#scheduleRetry()
  }

  /** Replays what Redis missed, if anything, at once; called when the link or the breaker recovers. */
  replayPending (): void {
    if (this.#pending.length === 0 && !this.#pendingOverflow) return
    this.#retryMs = RETRY_FIRST_MS
    this.#replay()
  }

  /**
   * Stops the retries and drops what is still queued, saying how many in the log (CACHE_INVALIDATIONS_DROPPED): the
   * other instances keep the old values until their TTLs. Reads here still skip those keys in Redis, which may hold
   * the old values.
   */
  close (): void {
    clearTimeout(this.#retry)
    this.#retry = undefined
    this.#stuck.dropped(this.pendingCount)
    this.#pending = []
    this.#pendingKeys = 0
    this.#pendingOverflow = false
  }

  #scheduleRetry (): void {
    if (this.#retry !== undefined || this.#replaying || this.#core.closed) return
    if (this.#pending.length === 0 && !this.#pendingOverflow) return
    const delay = this.#retryMs
    this.#retryMs = Math.min(delay * 2, RETRY_MAX_MS)
    // Unreferenced: a queued invalidation must not keep a process alive that has nothing else to do.
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      // Without a link every command fails at once; the link's return replays, and this keeps the backoff going.
      if (this.#core.tier?.client.status === 'ready') this.#replay()
      else this.#scheduleRetry()
    }, delay).unref()
  }

  /** One replay at a time: what is queued while it runs is taken in the same run, in order. */
  #replay (): void {
    if (this.#replaying || this.#core.closed) return
    clearTimeout(this.#retry)
    this.#retry = undefined
    this.#replaying = true
    void this.#drain().then(() => {
      this.#retryMs = RETRY_FIRST_MS
    }, (error: unknown) => {
      if (!this.#core.closed) this.#stuck.refused(error, this.pendingCount)
    }).finally(() => {
      this.#replaying = false
      this.#scheduleRetry()
    })
  }

  /**
   * Writes the queue to Redis oldest first, each part leaving the queue once Redis took it, so a failure leaves the
   * rest in order and nothing twice. What landed is then applied here and published again: while Redis still held
   * the old values, instances (this one included) may have copied them into their local tiers.
   */
  async #drain (): Promise<void> {
    const core = this.#core
    const tier = core.tier as RedisTier
    const landed: { keys: Set<string>, patterns: Set<string>, tags: Record<string, number> } = { keys: new Set(), patterns: new Set(), tags: {} }
    try {
      while (!core.closed) {
        if (this.#pendingOverflow) {
          // Cleared first: an overflow while the flush runs sets it again, for one more flush.
          this.#pendingOverflow = false
          try {
            await this.#invalidateRedis({ patterns: ['*'] })
          } catch (error) {
            // Refused after close() dropped the queue: dropped too, since nothing retries it.
            if (core.closed) this.#stuck.dropped(1)
            else this.#pendingOverflow = true
            throw error
          }
          core.pending.all = this.#pendingOverflow
          landed.patterns.add('*')
          continue
        }
        let head = this.#pending[0]
        if (head === undefined) {
          this.#stuck.drained()
          return
        }
        if ((head.keys?.length ?? 0) > 0 || (head.patterns?.length ?? 0) > 0) {
          await this.#invalidateRedis(head)
          for (const key of head.keys ?? []) landed.keys.add(key)
          for (const pattern of head.patterns ?? []) landed.patterns.add(pattern)
          // An overflow meanwhile emptied the queue: the flush it asks for covers the rest of this one.
          if (this.#pending[0] !== head) continue
          core.pending.remove(head)
          this.#pendingKeys -= sizeOf(head)
          // The keys are in; a failure of the tags below retries the tags alone.
          if (head.tags) this.#pending[0] = head = { tags: head.tags }
        }
        const tags = Object.keys(head.tags ?? {})
        if (tags.length > 0) {
          const gens = await tier.incr(tags.map((t) => core.tags.key(t)), tags.map((t) => core.tags.next(t)))
          tags.forEach((t, i) => { landed.tags[t] = Math.max(landed.tags[t] ?? 0, gens[i] ?? 0) })
        }
        if (this.#pending[0] === head) this.#pending.shift()
      }
    } finally {
      const replayed: Invalidation = {
        ...(landed.keys.size > 0 ? { keys: [...landed.keys] } : {}),
        ...(landed.patterns.size > 0 ? { patterns: [...landed.patterns] } : {}),
        ...(Object.keys(landed.tags).length > 0 ? { tags: landed.tags } : {})
      }
      if (Object.keys(replayed).length > 0 && !core.closed) {
        this.apply(replayed)
        await this.publish(replayed)
      }
    }
  }

  async #invalidateRedis (what: { keys?: string[], patterns?: string[] }): Promise<void> {
    const core = this.#core
    const tier = core.tier as RedisTier
    if (what.keys && what.keys.length > 0) await tier.bury(what.keys.map((k) => fullKey(core, k)), tombstone, core.options.tombstoneTtl * 1000)
    for (const pattern of what.patterns ?? []) await tier.deleteMatching(escapeGlob(core.options.prefix) + pattern)
  }
}
