import type { RedisTier } from './redis-tier.js'

/**
 * Tags are generation counters (`<prefix>__tag:<tag>` in Redis): an entry remembers the generations it was loaded
 * under and is stale once one of them moved on. This instance keeps the generations it has seen; bus messages keep
 * them current, and a tag it has not seen is asked of Redis once.
 */
export class TagGenerations {
  readonly #known = new Map<string, number>()
  readonly #tier: RedisTier | undefined
  readonly #prefix: string

  constructor (tier: RedisTier | undefined, prefix: string) {
    this.#tier = tier
    this.#prefix = prefix
  }

  key (tag: string): string {
    return `${this.#prefix}__tag:${tag}`
  }

  /** True when none of `tags` moved past the generation recorded with the entry; learns newer generations it meets. */
  current (tags: Record<string, number> | undefined, known?: Record<string, number>): boolean {
    if (!tags) return true
    for (const [tag, gen] of Object.entries(tags)) {
      const current = known?.[tag] ?? this.#known.get(tag)
      if (current === undefined) return false
      if (gen < current) return false
      if (gen > current) this.#known.set(tag, gen)
    }
    return true
  }

  /** Generations of `tags`, asking Redis for the ones this instance has not seen. */
  async of (tags: string[]): Promise<Record<string, number>> {
    const unknown = tags.filter((t) => !this.#known.has(t))
    if (unknown.length > 0) {
      let fetched: number[] | undefined
      if (this.#tier) fetched = await this.#tier.getNumbers(unknown.map((t) => this.key(t))).catch(() => undefined)
      // Without Redis, an unknown tag starts at 0; reconnecting flushes these guesses.
      unknown.forEach((t, i) => this.#known.set(t, Math.max(this.#known.get(t) ?? 0, fetched?.[i] ?? 0)))
    }
    return Object.fromEntries(tags.map((t) => [t, this.#known.get(t) ?? 0]))
  }

  /** Raises each tag to at least `gen` (a received invalidation, or our own INCR). */
  raise (tag: string, gen: number): void {
    this.#known.set(tag, Math.max(this.#known.get(tag) ?? 0, gen))
  }

  /** The next generation of `tag` as this instance sees it (when Redis could not count). */
  next (tag: string): number {
    return (this.#known.get(tag) ?? 0) + 1
  }

  clear (): void {
    this.#known.clear()
  }
}
