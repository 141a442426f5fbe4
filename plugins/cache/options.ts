import { randomUUID } from 'node:crypto'
import { MAX_TIMER_MS } from '../chassis/index.js'
import { MAX_BUDGET_MS } from '../redis/index.js'
import { CacheErrors } from './errors.js'

export interface GetOrSetOptions {
  /** Seconds; the manager's default when unset. */
  ttl?: number
  /** Tags this entry depends on; `invalidateTags` makes it stale on every instance in constant time. */
  tags?: string[]
  /** Seconds of grace; the manager's default when unset. */
  grace?: number
  /** A loaded value for which this is false is returned but stored in neither tier (e.g. "not found" answers). */
  cacheIf?: (value: unknown) => boolean
}

export interface CacheLogger {
  warn: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
}

export interface CacheOptions {
  /** Default TTL of an entry, in seconds. @default 300 */
  ttl?: number
  /** Prefix of every Redis key and pub/sub channel. @default 'app:' */
  prefix?: string
  /** Seconds an expired entry is kept to be served when its loader fails. @default 60 */
  grace?: number
  /** Use the in-process tier. @default true */
  localEnabled?: boolean
  /** Entries the in-process tier holds at most. @default 10000 */
  localMaxEntries?: number
  /** Bytes (serialized size) the in-process tier holds at most. @default 67108864 */
  localMaxBytes?: number
  /** Seconds an in-process copy stays fresh at most (never past its Redis TTL). @default 60 */
  localTtl?: number
  /** Time budget of one Redis command, in ms. @default 100 */
  redisTimeoutMs?: number
  /** Consecutive Redis failures that open the circuit breaker; the calls failing in one stall count once. @default 5 */
  breakerThreshold?: number
  /** Ms the breaker stays open before one probe. @default 2000 */
  breakerCooldownMs?: number
  /** Ms a write waits for other instances to confirm their local tiers dropped the keys. @default 200 */
  ackTimeoutMs?: number
  /** Seconds a deleted key keeps its tombstone, longer than any loader runs. @default 60 */
  tombstoneTtl?: number
  /** Invalidations Redis could not take, retried until it does; past this many, one flush. @default 10000 */
  maxPendingInvalidations?: number
  /** Fill the local tier with the hottest entries from Redis before the cache reports ready. @default true */
  warmEnabled?: boolean
  /** Entries warming copies at most; also how many hot loaders are re-run after a Redis flush. @default 1000 */
  warmMaxEntries?: number
  /** Ms warming (and a re-run after a flush) may take at most. @default 2000 */
  warmTimeoutMs?: number
  /** Share of its TTL under which a hot entry is reloaded in the background by one instance; 0 disables. @default 0.2 */
  refreshAheadRatio?: number
  /** Refresh-ahead covers only this many of the fleet's hottest keys. @default 100 */
  refreshAheadMaxKeys?: number
  /** Refresh-ahead reloads running at once on one instance. @default 4 */
  refreshAheadConcurrency?: number
  /** Hot keys counted per instance and kept in Redis (a decaying top-K); 0 disables hot-key tracking. @default 1000 */
  hotKeysMax?: number
  /** Ms between two flushes of this instance's hot-key counts to Redis (and checks for a Redis flush). @default 5000 */
  hotKeysIntervalMs?: number
  /** Identifies this instance on the invalidation bus. @default a random UUID */
  instanceId?: string
  /**
   * Ms on a monotonic clock, by which the stuck-invalidation log lines are timed (never the wall clock, which NTP or
   * a resumed VM may step); tests pass their own. @default performance.now()
   */
  clock?: () => number
  logger?: CacheLogger
}

export type ResolvedCacheOptions = Required<Omit<CacheOptions, 'logger'>> & { logger: CacheLogger | undefined }

export const cacheDefaults = Object.freeze({
  ttl: 300,
  prefix: 'app:',
  grace: 60,
  localEnabled: true,
  localMaxEntries: 10000,
  localMaxBytes: 64 * 1024 * 1024,
  localTtl: 60,
  redisTimeoutMs: 100,
  breakerThreshold: 5,
  breakerCooldownMs: 2000,
  ackTimeoutMs: 200,
  tombstoneTtl: 60,
  maxPendingInvalidations: 10000,
  warmEnabled: true,
  warmMaxEntries: 1000,
  warmTimeoutMs: 2000,
  refreshAheadRatio: 0.2,
  refreshAheadMaxKeys: 100,
  refreshAheadConcurrency: 4,
  hotKeysMax: 1000,
  hotKeysIntervalMs: 5000
})

const monotonicNow = (): number => performance.now()

export function resolveCacheOptions (options: CacheOptions): ResolvedCacheOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
  const o = { ...cacheDefaults, instanceId: randomUUID(), clock: monotonicNow, logger: undefined, ...defined } as ResolvedCacheOptions
  const problems: string[] = []
  const positive = ['ttl', 'localMaxEntries', 'localMaxBytes', 'redisTimeoutMs', 'breakerThreshold', 'tombstoneTtl'] as const
  for (const key of positive) if (!(Number.isFinite(o[key]) && o[key] > 0)) problems.push(`${key} must be a positive number`)
  const nonNegative = ['grace', 'localTtl', 'breakerCooldownMs', 'ackTimeoutMs', 'maxPendingInvalidations', 'warmMaxEntries', 'warmTimeoutMs', 'hotKeysMax', 'refreshAheadMaxKeys'] as const
  for (const key of nonNegative) if (!(Number.isFinite(o[key]) && o[key] >= 0)) problems.push(`${key} must be a non-negative number`)
  if (!(Number.isInteger(o.refreshAheadConcurrency) && o.refreshAheadConcurrency >= 1)) problems.push('refreshAheadConcurrency must be an integer of at least 1')
  if (!(Number.isFinite(o.hotKeysIntervalMs) && o.hotKeysIntervalMs >= 10)) problems.push('hotKeysIntervalMs must be at least 10')
  if (!(Number.isFinite(o.refreshAheadRatio) && o.refreshAheadRatio >= 0 && o.refreshAheadRatio < 1)) problems.push('refreshAheadRatio must be in [0, 1)')
  if (typeof o.prefix !== 'string') problems.push('prefix must be a string')
  if (typeof o.clock !== 'function') problems.push('clock must be a function')
  // Node fires a timer above MAX_TIMER_MS at once: every wait would end at once, every interval run in a loop.
  if (o.redisTimeoutMs > MAX_BUDGET_MS) problems.push(`redisTimeoutMs must be at most ${MAX_BUDGET_MS}`)
  for (const key of ['breakerCooldownMs', 'ackTimeoutMs', 'warmTimeoutMs', 'hotKeysIntervalMs'] as const) if (o[key] > MAX_TIMER_MS) problems.push(`${key} must be at most ${MAX_TIMER_MS}`)
  if (problems.length > 0) throw new CacheErrors.CACHE_INVALID_OPTIONS(problems.join('; '))
  return Object.freeze(o)
}
