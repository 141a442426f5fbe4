import { globToRegExp } from './glob.js'

/**
 * The keys and patterns of the invalidations Redis has not taken yet. Until it does, Redis may still hold their old
 * values, so this instance does not read them there: a write's own instance would otherwise serve what it just
 * changed. Tags need nothing here: the generation this instance raised already makes the old entries stale.
 */
export class PendingKeys {
  readonly #keys = new Map<string, number>()
  readonly #patterns = new Map<string, { re: RegExp, count: number }>()
  /** Set while an overflow's flush of the whole prefix is owed: every key may be old in Redis. */
  all = false

  get empty (): boolean {
    return !this.all && this.#keys.size === 0 && this.#patterns.size === 0
  }

  has (key: string): boolean {
    if (this.empty) return false
    if (this.all || this.#keys.has(key)) return true
    for (const { re } of this.#patterns.values()) if (re.test(key)) return true
    return false
  }

  add (what: { keys?: string[], patterns?: string[] }): void {
    for (const key of what.keys ?? []) this.#keys.set(key, (this.#keys.get(key) ?? 0) + 1)
    for (const pattern of what.patterns ?? []) {
      const known = this.#patterns.get(pattern)
      if (known) known.count++
      else this.#patterns.set(pattern, { re: globToRegExp(pattern), count: 1 })
    }
  }

  remove (what: { keys?: string[], patterns?: string[] }): void {
    for (const key of what.keys ?? []) {
      const count = (this.#keys.get(key) ?? 0) - 1
      if (count > 0) this.#keys.set(key, count)
      else this.#keys.delete(key)
    }
    for (const pattern of what.patterns ?? []) {
      const known = this.#patterns.get(pattern)
      if (known && --known.count <= 0) this.#patterns.delete(pattern)
    }
  }

  /** An overflow: the queue is dropped for a flush of everything. */
  overflow (): void {
    this.#keys.clear()
    this.#patterns.clear()
    this.all = true
  }
}
