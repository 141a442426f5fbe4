import { LRUCache } from 'lru-cache'
import { TelemetryErrors } from './errors.js'
import { normalizeQuery } from './query-normalizer.js'

export interface QuerySample {
  sql: string
  /** Records an operation under this name instead of normalizing `sql` (used by @QueryTracking). */
  label?: string
  durationMs: number
  rows?: number | null
  error?: boolean
  traceId?: string
}

export interface QueryStat {
  fingerprint: string
  query: string
  count: number
  totalMs: number
  avgMs: number
  minMs: number
  maxMs: number
  p50Ms: number
  p95Ms: number
  p99Ms: number
  rows: number
  errors: number
}

export interface SlowQuery {
  fingerprint: string
  query: string
  durationMs: number
  at: Date
  traceId?: string
}

export interface QueryStatisticsOptions {
  /** A query slower than this is logged and kept, in ms. @default 1000 */
  slowThresholdMs?: number
  /** Fingerprints kept; the least used are dropped past it. @default 1000 */
  maxFingerprints?: number
  /** Durations kept per fingerprint for percentiles. @default 512 */
  samplesPerFingerprint?: number
  /** Slow queries kept. @default 100 */
  maxSlowQueries?: number
}

export const queryStatisticsDefaults = Object.freeze({
  slowThresholdMs: 1000,
  maxFingerprints: 1000,
  samplesPerFingerprint: 512,
  maxSlowQueries: 100
})

export type ResolvedQueryStatisticsOptions = Readonly<Required<QueryStatisticsOptions>>

export function resolveQueryStatisticsOptions (options: QueryStatisticsOptions): ResolvedQueryStatisticsOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
  const o = { ...queryStatisticsDefaults, ...defined } as Required<QueryStatisticsOptions>
  const problems: string[] = []
  if (!(Number.isFinite(o.slowThresholdMs) && o.slowThresholdMs > 0)) problems.push('slowThresholdMs must be a positive number')
  for (const key of ['maxFingerprints', 'samplesPerFingerprint', 'maxSlowQueries'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) problems.push(`${key} must be a positive integer`)
  }
  if (problems.length > 0) throw new TelemetryErrors.QUERY_STATS_INVALID_OPTIONS(problems.join('; '))
  return Object.freeze(o)
}

class Entry {
  count = 0
  totalMs = 0
  minMs = Number.POSITIVE_INFINITY
  maxMs = 0
  rows = 0
  errors = 0
  readonly samples: number[] = []
  next = 0
  constructor (readonly fingerprint: string, readonly query: string, readonly capacity: number) {}

  add (s: QuerySample): void {
    this.count++
    this.totalMs += s.durationMs
    if (s.durationMs < this.minMs) this.minMs = s.durationMs
    if (s.durationMs > this.maxMs) this.maxMs = s.durationMs
    this.rows += s.rows ?? 0
    if (s.error) this.errors++
    // A ring of the latest durations: percentiles over recent behaviour, memory fixed per fingerprint.
    if (this.samples.length < this.capacity) this.samples.push(s.durationMs)
    else this.samples[this.next] = s.durationMs
    this.next = (this.next + 1) % this.capacity
  }

  stat (): QueryStat {
    const sorted = [...this.samples].sort((a, b) => a - b)
    const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0
    return {
      fingerprint: this.fingerprint,
      query: this.query,
      count: this.count,
      totalMs: this.totalMs,
      avgMs: this.count === 0 ? 0 : this.totalMs / this.count,
      minMs: this.count === 0 ? 0 : this.minMs,
      maxMs: this.maxMs,
      p50Ms: pct(0.5),
      p95Ms: pct(0.95),
      p99Ms: pct(0.99),
      rows: this.rows,
      errors: this.errors
    }
  }
}

/**
 * Statistics per normalized query (fingerprint), slow-query detection, and a summary. Memory is bounded in
 * fingerprints, samples and slow queries. No literal reaches it.
 */
export class QueryStatistics {
  readonly #entries: LRUCache<string, Entry>
  readonly #slow: SlowQuery[] = []
  readonly #slowListeners = new Set<(slow: SlowQuery) => void>()
  #options: ResolvedQueryStatisticsOptions
  #total = 0
  #totalMs = 0
  #maxMs = 0
  #slowCount = 0

  constructor (options: QueryStatisticsOptions = {}) {
    this.#options = resolveQueryStatisticsOptions(options)
    this.#entries = new LRUCache({ max: this.#options.maxFingerprints })
  }

  get slowThresholdMs (): number {
    return this.#options.slowThresholdMs
  }

  /** Changes the threshold of a running instance (the query statistics plugin sets it from its configuration). */
  set slowThresholdMs (ms: number) {
    this.#options = resolveQueryStatisticsOptions({ ...this.#options, slowThresholdMs: ms })
  }

  /** Calls `listener` with each slow query from now on; returns the function that stops it. */
  onSlowQuery (listener: (slow: SlowQuery) => void): () => void {
    this.#slowListeners.add(listener)
    return () => this.#slowListeners.delete(listener)
  }

  record (sample: QuerySample): void {
    const n = sample.label !== undefined ? { fingerprint: `op:${sample.label}`, text: sample.label } : normalizeQuery(sample.sql)
    let entry = this.#entries.get(n.fingerprint)
    if (!entry) this.#entries.set(n.fingerprint, entry = new Entry(n.fingerprint, n.text, this.#options.samplesPerFingerprint))
    entry.add(sample)
    this.#total++
    this.#totalMs += sample.durationMs
    if (sample.durationMs > this.#maxMs) this.#maxMs = sample.durationMs
    if (sample.durationMs >= this.#options.slowThresholdMs) {
      this.#slowCount++
      const slow: SlowQuery = { fingerprint: n.fingerprint, query: n.text, durationMs: sample.durationMs, at: new Date(), ...(sample.traceId ? { traceId: sample.traceId } : {}) }
      this.#slow.push(slow)
      if (this.#slow.length > this.#options.maxSlowQueries) this.#slow.shift()
      for (const listener of this.#slowListeners) listener(slow)
    }
  }

  /** The `n` slowest recent slow queries, slowest first. */
  getSlowQueries (n = 10): SlowQuery[] {
    return [...this.#slow].sort((a, b) => b.durationMs - a.durationMs).slice(0, n)
  }

  /** The `n` fingerprints with the most total time, most first. */
  getQueryStats (n = 10): QueryStat[] {
    return [...this.#entries.values()].map((e) => e.stat()).sort((a, b) => b.totalMs - a.totalMs).slice(0, n)
  }

  getSummary (): { totalQueries: number, slowQueriesCount: number, avgQueryDuration: number, maxQueryDuration: number, fingerprints: number } {
    return {
      totalQueries: this.#total,
      slowQueriesCount: this.#slowCount,
      avgQueryDuration: this.#total === 0 ? 0 : this.#totalMs / this.#total,
      maxQueryDuration: this.#maxMs,
      fingerprints: this.#entries.size
    }
  }

  reset (): void {
    this.#entries.clear()
    this.#slow.length = 0
    this.#total = 0
    this.#totalMs = 0
    this.#maxMs = 0
    this.#slowCount = 0
  }
}

/**
 * The process's query statistics: the query statistics plugin records into it, `@QueryTracking` records into it
 * unless told otherwise, and the admin route reads it. The query seam is one per process, so its statistics are too.
 */
export const queryStatistics = new QueryStatistics()

/**
 * Times a repository method and records it under `name.method` (standard decorator). The queries it runs are
 * recorded by their own fingerprints through the query seam as well.
 */
export function QueryTracking (name: string, statistics: QueryStatistics = queryStatistics) {
  return function <This, A extends unknown[], R> (method: (this: This, ...args: A) => Promise<R>, context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>) {
    const label = `${name}.${String(context.name)}`
    return async function (this: This, ...args: A): Promise<R> {
      const started = performance.now()
      let error = false
      try {
        return await method.apply(this, args)
      } catch (e) {
        error = true
        throw e
      } finally {
        statistics.record({ sql: '', label, durationMs: performance.now() - started, error })
      }
    }
  }
}
