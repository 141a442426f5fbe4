import { tombstone } from './codec.js'
import { fullKey, type CacheCore } from './core.js'
import { escapeGlob, globToRegExp } from './glob.js'
import type { Invalidation, InvalidationBus } from './invalidation-bus.js'
import type { RedisTier } from './redis-tier.js'

export interface InvalidationRequest {
  keys?: string[]
  patterns?: string[]
  tags?: string[]
}

/**
 * Invalidation on every instance: applied here at once, written to Redis (tombstones, SCAN + UNLINK, one INCR per
 * tag), then published on the bus. What Redis could not take is queued (bounded) and replayed when it is back.
 */
export class Invalidator {
  readonly #core: CacheCore
  readonly #bus: InvalidationBus | undefined
  #pending: Invalidation[] = []
  #pendingOverflow = false

  constructor (core: CacheCore, bus: InvalidationBus | undefined) {
    this.#core = core
    this.#bus = bus
  }

  async invalidate (what: InvalidationRequest): Promise<void> {
    const core = this.#core
    const keys = what.keys ?? []
    const patterns = what.patterns ?? []
    const tags = what.tags ?? []
    if (core.tier && !core.tier.cluster && patterns.length === 0) return this.#invalidateAtOnce(core.tier, keys, tags)
    const tagGens: Record<string, number> = {}
    if (tags.length > 0) {
      let next: number[] | undefined
      if (core.tier) next = await core.tier.incr(tags.map((t) => core.tags.key(t)), tags.map((t) => core.tags.next(t))).catch(() => undefined)
      tags.forEach((t, i) => {
        const gen = Math.max(next?.[i] ?? 0, core.tags.next(t))
        tagGens[t] = gen
        core.tags.raise(t, gen)
      })
      if (core.tier && !next) this.queue({ tags: Object.fromEntries(tags.map((t) => [t, 0])) })
    }
    const invalidation: Invalidation = {
      ...(keys.length > 0 ? { keys } : {}),
      ...(patterns.length > 0 ? { patterns } : {}),
      ...(tags.length > 0 ? { tags: tagGens } : {})
    }
    this.apply(invalidation)
    if (core.tier) {
      try {
        await this.#invalidateRedis({ keys, patterns })
      } catch {
        this.queue({ keys, patterns })
      }
    }
    await this.publish(invalidation)
  }

  /**
   * Keys and tags on a standalone Redis: the generations, the tombstones and the bus message in one round trip
   * (RedisTier.invalidate), then applied here; what Redis could not take is queued, as on the other path.
   */
  async #invalidateAtOnce (tier: RedisTier, keys: string[], tags: string[]): Promise<void> {
    const core = this.#core
    const outgoing = this.#bus && tier.available ? this.#bus.prepare(keys.length > 0 ? { keys } : {}) : undefined
    const done = await tier.invalidate({
      tags: tags.map((t) => ({ key: core.tags.key(t), name: t, floor: core.tags.next(t) })),
      buried: keys.map((k) => ({ key: fullKey(core, k), payload: tombstone() })),
      pxMs: core.options.tombstoneTtl * 1000,
      channel: outgoing?.channel ?? '',
      head: outgoing?.head ?? ''
    }).catch(() => undefined)
    const tagGens: Record<string, number> = {}
    tags.forEach((t, i) => {
      const gen = Math.max(done?.gens[i] ?? 0, core.tags.next(t))
      tagGens[t] = gen
      core.tags.raise(t, gen)
    })
    this.apply({ ...(keys.length > 0 ? { keys } : {}), ...(tags.length > 0 ? { tags: tagGens } : {}) })
    if (!done) {
      outgoing?.drop()
      this.queue({ keys, ...(tags.length > 0 ? { tags: Object.fromEntries(tags.map((t) => [t, 0])) } : {}) })
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

  /** Remembers an invalidation Redis could not take, to replay when it is back. */
  queue (inv: Invalidation): void {
    if (this.#pending.length >= this.#core.options.maxPendingInvalidations) {
      this.#pendingOverflow = true
      this.#pending = []
      return
    }
    this.#pending.push(inv)
  }

  /** Replays what Redis missed, if anything; called when the link or the breaker recovers. */
  replayPending (): void {
    if (this.#pending.length > 0 || this.#pendingOverflow) void this.#replay()
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
        if (tags.length > 0) await (this.#core.tier as RedisTier).incr(tags.map((t) => this.#core.tags.key(t)), tags.map((t) => this.#core.tags.next(t)))
      }
    } catch {
      this.#pending = pending.concat(this.#pending)
      this.#pendingOverflow ||= overflow
      // Redis may be back for the bus but not yet for commands (breaker cooling down): try again shortly.
      if (!this.#core.closed) setTimeout(() => { void this.#replay() }, 250).unref()
    }
  }

  async #invalidateRedis (what: { keys?: string[], patterns?: string[] }): Promise<void> {
    const core = this.#core
    const tier = core.tier as RedisTier
    if (what.keys && what.keys.length > 0) await tier.bury(what.keys.map((k) => fullKey(core, k)), tombstone, core.options.tombstoneTtl * 1000)
    for (const pattern of what.patterns ?? []) await tier.deleteMatching(escapeGlob(core.options.prefix) + pattern)
  }
}
