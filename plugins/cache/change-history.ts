/** One invalidation as the history remembers it. */
interface Change {
  seq: number
  keys?: Set<string>
  patterns?: RegExp[]
  tags?: string[]
  all?: boolean
}

const HISTORY = 1024
/**
 * A change naming more keys is remembered as touching every key: a load it overlaps is not stored here (it may be),
 * and the history holds at most HISTORY times this many keys, not a thousand per import batch on every instance.
 */
export const MAX_KEYS_PER_CHANGE = 64

/**
 * The last invalidations this instance applied, numbered: a load notes the number before it reads and, before it
 * stores, asks whether anything touching its key arrived since; if so the value may predate it and is not cached.
 */
export class ChangeHistory {
  readonly #changes: Change[] = []
  #seq = 0

  /** The number of the latest change; a load takes it before reading. */
  get seq (): number {
    return this.#seq
  }

  record (change: { keys?: string[], patterns?: RegExp[], tags?: string[], all?: boolean }): void {
    if ((change.keys?.length ?? 0) + (change.patterns?.length ?? 0) > MAX_KEYS_PER_CHANGE) change = { all: true }
    this.#changes.push({ seq: ++this.#seq, ...(change.keys ? { keys: new Set(change.keys) } : {}), ...(change.patterns ? { patterns: change.patterns } : {}), ...(change.tags ? { tags: change.tags } : {}), ...(change.all ? { all: true } : {}) })
    if (this.#changes.length > HISTORY) this.#changes.shift()
  }

  /**
   * True when nothing recorded after `seq` can have changed `key`, whatever its tags: no change of the key, of any
   * pattern, of any tag, or of everything (and the history still reaches back to `seq`). Any pattern, not only one
   * the key matches here: Redis matches a glob by bytes (`?` is one byte), the RegExp made of it by UTF-16 units.
   */
  untouchedSince (key: string, seq: number): boolean {
    if (seq === this.#seq) return true
    const oldest = this.#changes[0]
    if (!oldest || oldest.seq > seq + 1) return false
    for (let i = this.#changes.length - 1; i >= 0; i--) {
      const c = this.#changes[i] as Change
      if (c.seq <= seq) break
      if (c.all || c.tags !== undefined || c.patterns !== undefined || c.keys?.has(key)) return false
    }
    return true
  }

  /** True when an invalidation that touches `key` arrived after `seq` (or the history no longer reaches back). */
  changedSince (key: string, tags: string[] | undefined, seq: number): boolean {
    if (seq === this.#seq) return false
    const oldest = this.#changes[0]
    if (!oldest || oldest.seq > seq + 1) return true
    for (let i = this.#changes.length - 1; i >= 0; i--) {
      const c = this.#changes[i] as Change
      if (c.seq <= seq) break
      if (c.all || c.keys?.has(key) || c.patterns?.some((re) => re.test(key)) || (tags && c.tags?.some((t) => tags.includes(t)))) return true
    }
    return false
  }
}
