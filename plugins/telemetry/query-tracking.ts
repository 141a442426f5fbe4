import { QUERY_CHANNEL_NAME, type QueryContext } from '../db-pool/index.js'
import { tracingChannel } from 'node:diagnostics_channel'
import { queryStatistics, type QueryStatistics } from './query-stats.js'

interface TimedContext extends QueryContext {
  startedAt?: number
  failed?: boolean
}

export interface QueryTrackingOptions {
  /** @default the process's `queryStatistics` */
  statistics?: QueryStatistics
  /** The current trace id, to link a slow query to its trace (telemetry provides it). */
  traceId?: () => string | undefined
}

interface Subscription {
  users: number
  unsubscribe: () => void
}

// The seam is one per process: two apps of one process tracking into the same statistics share one subscriber, or
// every query would be counted once per app.
const subscriptions = new WeakMap<QueryStatistics, Subscription>()

/**
 * Subscribes to the db-pool query seam: every query's duration, rows and error go to the statistics. Returns the
 * function that releases the subscription; the seam loses its subscriber when the last user releases it. With no
 * subscriber the seam costs the pool one boolean check per query.
 */
export function trackQueries (options: QueryTrackingOptions = {}): () => void {
  const statistics = options.statistics ?? queryStatistics
  let subscription = subscriptions.get(statistics)
  if (!subscription) {
    subscription = { users: 0, unsubscribe: subscribe(statistics, options.traceId) }
    subscriptions.set(statistics, subscription)
  }
  const shared = subscription
  shared.users++
  let released = false
  return () => {
    if (released) return
    released = true
    if (--shared.users > 0) return
    shared.unsubscribe()
    subscriptions.delete(statistics)
  }
}

function subscribe (statistics: QueryStatistics, traceIdOf: (() => string | undefined) | undefined): () => void {
  const channel = tracingChannel<TimedContext, TimedContext>(QUERY_CHANNEL_NAME)
  const handlers = {
    start: (ctx: TimedContext) => { ctx.startedAt = performance.now() },
    end: () => {},
    asyncStart: () => {},
    error: (ctx: TimedContext) => { ctx.failed = true },
    asyncEnd: (ctx: TimedContext) => {
      if (ctx.startedAt === undefined) return
      const durationMs = performance.now() - ctx.startedAt
      // Only a slow query is logged with its trace id; the others skip the context lookup.
      const traceId = durationMs >= statistics.slowThresholdMs ? traceIdOf?.() : undefined
      statistics.record({ sql: ctx.text, durationMs, rows: ctx.result?.rowCount ?? null, error: ctx.failed === true, ...(traceId ? { traceId } : {}) })
    }
  }
  channel.subscribe(handlers)
  return () => channel.unsubscribe(handlers)
}
