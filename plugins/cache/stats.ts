import type { BreakerState } from '../redis/index.js'

class Latency {
  count = 0
  totalMs = 0
  maxMs = 0
  add (ms: number): void {
    this.count++
    this.totalMs += ms
    if (ms > this.maxMs) this.maxMs = ms
  }

  toJSON (): { count: number, avgMs: number, maxMs: number } {
    return { count: this.count, avgMs: this.count === 0 ? 0 : this.totalMs / this.count, maxMs: this.maxMs }
  }
}

/** Counters the manager updates; `snapshot` turns them into `getStats()`. */
export class CacheCounters {
  localHits = 0
  localMisses = 0
  redisHits = 0
  redisMisses = 0
  redisErrors = 0
  redisTimeouts = 0
  redisRoundTrips = 0
  redisLatency = new Latency()
  loaderCalls = 0
  loaderErrors = 0
  loaderLatency = new Latency()
  coalesced = 0
  staleServes = 0
  evictions = 0
  decodeErrors = 0
  localFlushes = 0
  invalidationsPublished = 0
  invalidationsReceived = 0
  ackTimeouts = 0
  invalidationsRefused = 0
  uncachedLoads = 0
  warmed = 0
  refreshes = 0
}

export interface CacheStats {
  /** The fields every cache reports. */
  localCacheEnabled: boolean
  localCacheSize: number
  mode: 'two-tier' | 'local-only'
  hitRate: number
  local: { hits: number, misses: number, hitRate: number, entries: number, bytes: number, maxEntries: number, maxBytes: number, evictions: number, flushes: number }
  redis: { hits: number, misses: number, hitRate: number, errors: number, timeouts: number, roundTrips: number, latency: ReturnType<Latency['toJSON']>, breaker: BreakerState | 'none', connected: boolean }
  loader: { calls: number, errors: number, latency: ReturnType<Latency['toJSON']> }
  coalescedWaits: number
  staleServes: number
  decodeErrors: number
  uncachedLoads: number
  /** `pending`: waiting for Redis now; `refused`: writes of one Redis did not take since start (first tries and retries). */
  invalidations: { published: number, received: number, ackTimeouts: number, pending: number, refused: number }
  /** Entries copied into the local tier on start, background reloads ahead of expiry, loaders re-run after a Redis flush. */
  warming: { warmed: number, refreshes: number, reruns: number, hotKeys: number, tracked: number }
}

const rate = (hits: number, misses: number): number => (hits + misses === 0 ? 0 : hits / (hits + misses))

export function snapshot (c: CacheCounters, extra: {
  localEnabled: boolean, entries: number, bytes: number, maxEntries: number, maxBytes: number, hasRedis: boolean, breaker: BreakerState | 'none', connected: boolean
  reruns: number, hotKeys: number, tracked: number, pendingInvalidations: number
}): CacheStats {
  const hits = c.localHits + c.redisHits
  return {
    localCacheEnabled: extra.localEnabled,
    localCacheSize: extra.entries,
    mode: extra.hasRedis ? 'two-tier' : 'local-only',
    hitRate: rate(hits, c.loaderCalls),
    local: { hits: c.localHits, misses: c.localMisses, hitRate: rate(c.localHits, c.localMisses), entries: extra.entries, bytes: extra.bytes, maxEntries: extra.maxEntries, maxBytes: extra.maxBytes, evictions: c.evictions, flushes: c.localFlushes },
    redis: { hits: c.redisHits, misses: c.redisMisses, hitRate: rate(c.redisHits, c.redisMisses), errors: c.redisErrors, timeouts: c.redisTimeouts, roundTrips: c.redisRoundTrips, latency: c.redisLatency.toJSON(), breaker: extra.breaker, connected: extra.connected },
    loader: { calls: c.loaderCalls, errors: c.loaderErrors, latency: c.loaderLatency.toJSON() },
    coalescedWaits: c.coalesced,
    staleServes: c.staleServes,
    decodeErrors: c.decodeErrors,
    uncachedLoads: c.uncachedLoads,
    invalidations: { published: c.invalidationsPublished, received: c.invalidationsReceived, ackTimeouts: c.ackTimeouts, pending: extra.pendingInvalidations, refused: c.invalidationsRefused },
    warming: { warmed: c.warmed, refreshes: c.refreshes, reruns: extra.reruns, hotKeys: extra.hotKeys, tracked: extra.tracked }
  }
}
