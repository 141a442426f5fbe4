import type { ChangeHistory } from './change-history.js'
import type { LocalTier } from './local-tier.js'
import type { PendingKeys } from './pending-keys.js'
import type { ResolvedCacheOptions } from './options.js'
import type { RedisTier } from './redis-tier.js'
import type { CacheCounters } from './stats.js'
import type { TagGenerations } from './tag-generations.js'
import type { Warming } from './warming.js'

/** What the parts of a cache manager share: its tiers, its counters, its coherence state. */
export interface CacheCore {
  readonly options: ResolvedCacheOptions
  readonly local: LocalTier
  readonly tier: RedisTier | undefined
  readonly stats: CacheCounters
  readonly tags: TagGenerations
  readonly history: ChangeHistory
  readonly pending: PendingKeys
  warming: Warming | undefined
  closed: boolean
}

/** The Redis key; the local tier, the history and bus messages use keys without the prefix. */
export function fullKey (core: CacheCore, key: string): string {
  return core.options.prefix + key
}
