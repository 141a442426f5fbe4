import type { ChangeHistory } from './change-history.js'
import type { LocalTier } from './local-tier.js'
import type { PendingKeys } from './pending-keys.js'
import type { ResolvedCacheOptions } from './options.js'
import type { RedisTier } from './redis-tier.js'
import type { SingleFlight } from './single-flight.js'
import type { CacheCounters } from './stats.js'
import type { TagGenerations } from './tag-generations.js'
import type { Warming } from './warming.js'

/** One key read from Redis: a hit's value, a miss, or no answer (Redis failed or is skipped). */
export type KeyRead = { value: unknown } | 'miss' | 'unread'

/** What the parts of a cache manager share: its tiers, its counters, its coherence state. */
export interface CacheCore {
  readonly options: ResolvedCacheOptions
  readonly local: LocalTier
  readonly tier: RedisTier | undefined
  readonly stats: CacheCounters
  readonly tags: TagGenerations
  readonly history: ChangeHistory
  readonly pending: PendingKeys
  /**
   * `get`'s reads of Redis in flight, by key, which a `get` of the same key shares while no change recorded since the
   * read began may touch the key (`ChangeHistory.untouchedSince`).
   */
  readonly reads: SingleFlight<KeyRead>
  warming: Warming | undefined
  closed: boolean
  /** False while this instance's invalidation link is down: other instances' invalidations may not reach it. */
  linked: () => boolean
}

/**
 * How long a local copy may be served while the invalidation link is down: another instance's write is then seen
 * here within this, not within the local TTL.
 */
export const UNLINKED_LOCAL_TTL_MS = 1000

/** The Redis key; the local tier, the history and bus messages use keys without the prefix. */
export function fullKey (core: CacheCore, key: string): string {
  return core.options.prefix + key
}
