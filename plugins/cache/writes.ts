import { encode } from './codec.js'
import { fullKey, type CacheCore } from './core.js'
import type { Invalidator } from './invalidation.js'
import { storeLocal } from './tier-reads.js'

export interface SetOptions {
  tags?: string[]
}

/** Writes several entries in one pipeline (chunked), then invalidates them on the other instances in one message. */
export async function writeMany (core: CacheCore, invalidator: Invalidator, list: Array<[string, unknown]>, ttlSeconds: number | undefined, options: SetOptions): Promise<void> {
  const ttlMs = (ttlSeconds ?? core.options.ttl) * 1000
  const graceMs = core.options.grace * 1000
  const gens = options.tags && options.tags.length > 0 ? await core.tags.of(options.tags) : undefined
  const encoded = list.map(([key, value]) => ({ local: key, key: fullKey(core, key), value, payload: encode({ v: value, g: graceMs, ...(gens ? { t: gens } : {}) }, ttlMs), pxMs: ttlMs + graceMs }))
  const keys = encoded.map((e) => e.local)
  core.history.record({ keys })
  if (core.tier) {
    try {
      await core.tier.setMany(encoded)
    } catch (error) {
      invalidator.queue({ keys }, error)
    }
    // Again once Redis answered: a read of these keys begun before that, which may have been sent ahead of the write
    // (a cluster re-sends a pipeline answered MOVED later), is shared by no read asked after this write resolved.
    core.history.record({ keys })
  }
  for (const e of encoded) storeLocal(core, e.local, { value: e.value, tags: gens, freshMs: ttlMs, pttl: ttlMs + graceMs, size: e.payload.length }, core.history.seq, ttlSeconds)
  await invalidator.publish({ keys })
}
