import { stringify } from 'safe-stable-stringify'
import type { CacheManager } from './cache-manager.js'

type Method<This, A extends unknown[], R> = (this: This, ...args: A) => Promise<R>

/** A key part built from method arguments: stable across object key order, BigInt-safe. */
export function argsKey (args: readonly unknown[]): string {
  return stringify(args) ?? ''
}

export interface CacheableOptions<A extends unknown[]> {
  /** Seconds; the manager's default when unset. */
  ttl?: number
  /** Key prefix; the method name and a colon when unset. */
  prefix?: string
  /** Builds the key part from the arguments; a stable serialization of them when unset. */
  key?: (...args: A) => string
  tags?: string[] | ((...args: A) => string[])
}

/**
 * Caches the result of an async method (TypeScript standard decorators), with single-flight loading.
 * `cache` may be a function, for managers created after the class is defined.
 */
export function Cacheable<A extends unknown[]> (cache: CacheManager | (() => CacheManager), options: CacheableOptions<A> = {}) {
  return function <This, R> (method: Method<This, A, R>, context: ClassMethodDecoratorContext<This, Method<This, A, R>>): Method<This, A, R> {
    const prefix = options.prefix ?? `${String(context.name)}:`
    return async function (this: This, ...args: A): Promise<R> {
      const manager = typeof cache === 'function' ? cache() : cache
      const key = prefix + (options.key ? options.key(...args) : argsKey(args))
      const tags = typeof options.tags === 'function' ? options.tags(...args) : options.tags
      return manager.getOrSet(key, () => method.apply(this, args), { ...(options.ttl !== undefined ? { ttl: options.ttl } : {}), ...(tags ? { tags } : {}) })
    }
  }
}

export interface CacheInvalidateOptions<A extends unknown[]> {
  /** A Redis glob after the prefix; build the parts that come from arguments with `cachePattern`. */
  pattern?: string | ((...args: A) => string)
  keys?: string[] | ((...args: A) => string[])
  tags?: string[] | ((...args: A) => string[])
}

/** Invalidates keys, a pattern or tags after the method resolves; a method that throws invalidates nothing. */
export function CacheInvalidate<A extends unknown[]> (cache: CacheManager | (() => CacheManager), options: CacheInvalidateOptions<A>) {
  return function <This, R> (method: Method<This, A, R>, _context: ClassMethodDecoratorContext<This, Method<This, A, R>>): Method<This, A, R> {
    return async function (this: This, ...args: A): Promise<R> {
      const result = await method.apply(this, args)
      const manager = typeof cache === 'function' ? cache() : cache
      const resolve = (v: string[] | ((...a: A) => string[]) | undefined): string[] | undefined => (typeof v === 'function' ? v(...args) : v)
      const pattern = typeof options.pattern === 'function' ? options.pattern(...args) : options.pattern
      const keys = resolve(options.keys)
      const tags = resolve(options.tags)
      await manager.invalidate({ ...(keys ? { keys } : {}), ...(tags ? { tags } : {}), ...(pattern ? { patterns: [pattern] } : {}) })
      return result
    }
  }
}
