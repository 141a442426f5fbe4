import fp from 'fastify-plugin'
import { trace } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import { loadQueryParser } from './query-normalizer.js'
import { queryStatistics, type QueryStatistics } from './query-stats.js'
import { trackQueries } from './query-tracking.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The query statistics the admin route serves: the process's `queryStatistics` unless the plugin was given one. */
    queries: QueryStatistics
  }
}

export const queryStatsConfigFragment = {
  properties: {
    QUERY_STATS_ENABLED: { type: 'boolean', default: true, description: 'Measure every query by fingerprint (false: the query seam has no subscriber)' },
    SLOW_QUERY_THRESHOLD_MS: { type: 'integer', default: 1000, minimum: 1, description: 'A query slower than this is logged (normalized text, duration) and listed as slow' }
  }
} as const satisfies ConfigFragment

export type QueryStatsConfig = ConfigOf<typeof queryStatsConfigFragment>

export interface QueryStatsPluginOptions {
  /** Subscribe to the query seam; false leaves the seam without this subscriber (queries are not measured). @default true */
  enabled?: boolean
  /** Sets the statistics' slow-query threshold, in ms. @default the statistics' own (1000) */
  slowThresholdMs?: number
  /** @default the process's `queryStatistics` */
  statistics?: QueryStatistics
}

/**
 * Statistics per normalized query from the db-pool seam (`app.queries`), slow queries logged with their normalized
 * text. Disabled, `app.queries` is still there (it holds what `@QueryTracking` records) but no query reaches it.
 */
export const queryStatsPlugin = fp(async (app: FastifyInstance, opts: QueryStatsPluginOptions) => {
  const statistics = opts.statistics ?? queryStatistics
  if (opts.slowThresholdMs !== undefined) statistics.slowThresholdMs = opts.slowThresholdMs
  app.decorate('queries', statistics)
  if (opts.enabled === false) return
  await loadQueryParser()
  const stopLogging = statistics.onSlowQuery((slow) => app.log.warn({ fingerprint: slow.fingerprint, query: slow.query, durationMs: Math.round(slow.durationMs), traceId: slow.traceId }, 'slow query'))
  // The trace a slow query belongs to, so it can be opened in Jaeger (no-op when tracing is off).
  const stopTracking = trackQueries({ statistics, traceId: () => trace.getActiveSpan()?.spanContext().traceId })
  app.addHook('onClose', async () => {
    stopTracking()
    stopLogging()
  })
}, { name: 'query-stats', fastify: '5.x' })
