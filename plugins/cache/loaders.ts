import type { GetOrSetOptions } from './options.js'

const forgotten = async (): Promise<unknown> => { throw new Error('loader forgotten') }

/** A key's loader as its last getOrSet passed it, and when refresh-ahead should reload the key. */
export interface RegisteredLoader {
  loader: () => Promise<unknown>
  options: GetOrSetOptions
  /** Epoch ms from which the key is due for a reload (its Redis freshness end minus the window); Infinity: unknown. */
  dueAt: number
  /** Epoch ms of this instance's last read of the key (local hits included). */
  readAt: number
  /** The prune at which the key was last noted; a key that is not hot is forgotten one prune after its note. */
  notedAt: number
}

/**
 * The loaders of keys read through getOrSet: what refresh-ahead and the re-run after a Redis flush call. Every miss
 * notes its loader (a key is loaded before the fleet knows it is hot, and a local hit through `peek` carries no
 * loader), so a key that turns hot already has one. Bounded by `max`: a key that is not hot is forgotten at the
 * second prune after its last note, and when full a hot key's loader replaces one of a key that is not hot.
 */
export class LoaderRegistry {
  readonly #loaders = new Map<string, RegisteredLoader>()
  readonly #max: number
  #prunes = 0

  constructor (max: number) {
    this.#max = max
  }

  note (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions, isHot: (key: string) => boolean): void {
    const known = this.#loaders.get(key)
    if (known) {
      known.loader = loader
      known.options = options
      known.notedAt = this.#prunes
      return
    }
    if (this.#loaders.size >= this.#max && !(isHot(key) && this.#evictCold(isHot))) return
    this.#loaders.set(key, { loader, options, dueAt: Number.POSITIVE_INFINITY, readAt: 0, notedAt: this.#prunes })
  }

  get (key: string): RegisteredLoader | undefined {
    return this.#loaders.get(key)
  }

  has (key: string): boolean {
    return this.#loaders.has(key)
  }

  /** After each flush of hot-key counts: forgets keys that are not hot and had a flush to become so. */
  prune (isHot: (key: string) => boolean): void {
    for (const [key, registered] of this.#loaders) if (registered.notedAt < this.#prunes && !isHot(key)) this.#forget(key, registered)
    this.#prunes++
  }

  entries (): IterableIterator<[string, RegisteredLoader]> {
    return this.#loaders.entries()
  }

  keys (): string[] {
    return [...this.#loaders.keys()]
  }

  get size (): number {
    return this.#loaders.size
  }

  #evictCold (isHot: (key: string) => boolean): boolean {
    for (const [key, registered] of this.#loaders) {
      if (!isHot(key)) {
        this.#forget(key, registered)
        return true
      }
    }
    return false
  }

  // A local copy still points at the record: drop what the loader holds on to (a request, a reply) and never let
  // the record come due again.
  #forget (key: string, registered: RegisteredLoader): void {
    this.#loaders.delete(key)
    registered.loader = forgotten
    registered.options = {}
    registered.dueAt = Number.POSITIVE_INFINITY
  }
}
