import { QUERY_CHANNEL_NAME, type QueryContext } from '../db-pool/index.js'
import { tracingChannel } from 'node:diagnostics_channel'
import { globalQueryOptimizer, type QueryOptimizer } from './query-optimizer.js'

interface TimedContext extends QueryContext {
  startedAt?: number
  failed?: boolean
}

export interface QueryTrackingOptions {
  optimizer?: QueryOptimizer
  /** The current trace id, to link a slow query to its trace (telemetry provides it). */
  traceId?: () => string | undefined
}

/**
 * Subscribes to the db-pool query seam: every query's duration, rows and error go to the optimizer. Returns the
 * function that unsubscribes. With no subscriber the seam costs the pool one boolean check per query.
 */
export function trackQueries (options: QueryTrackingOptions = {}): () => void {
  const optimizer = options.optimizer ?? globalQueryOptimizer
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
      const traceId = durationMs >= optimizer.slowThresholdMs ? options.traceId?.() : undefined
      optimizer.record({ sql: ctx.text, durationMs, rows: ctx.result?.rowCount ?? null, error: ctx.failed === true, ...(traceId ? { traceId } : {}) })
    }
  }
  channel.subscribe(handlers)
  return () => channel.unsubscribe(handlers)
}

