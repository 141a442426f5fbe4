import type { GetOrSetOptions } from './options.js'

export interface RegisteredLoader {
  loader: () => Promise<unknown>
  options: GetOrSetOptions
}

/**
 * The loaders of hot keys, as the last getOrSet of each passed them: what refresh-ahead and the re-run after a Redis
 * flush call. Bounded by `max`; a key that stops being hot is forgotten at the next flush of hot-key counts.
 */
export class LoaderRegistry {
  readonly #loaders = new Map<string, RegisteredLoader>()
  readonly #max: number

  constructor (max: number) {
    this.#max = max
  }

  note (key: string, loader: () => Promise<unknown>, options: GetOrSetOptions): void {
    if (this.#loaders.size >= this.#max && !this.#loaders.has(key)) return
    this.#loaders.set(key, { loader, options })
  }

  get (key: string): RegisteredLoader | undefined {
    return this.#loaders.get(key)
  }

  has (key: string): boolean {
    return this.#loaders.has(key)
  }

  keep (isHot: (key: string) => boolean): void {
    for (const key of this.#loaders.keys()) if (!isHot(key)) this.#loaders.delete(key)
  }

  keys (): string[] {
    return [...this.#loaders.keys()]
  }

  get size (): number {
    return this.#loaders.size
  }
}
