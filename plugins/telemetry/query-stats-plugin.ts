import fp from 'fastify-plugin'
import { trace } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import type { ConfigFragment } from '../chassis/index.js'
import { loadQueryParser } from './query-normalizer.js'
import { QueryOptimizer } from './query-optimizer.js'
import { trackQueries } from './query-tracking.js'

declare module 'fastify' {
  interface FastifyInstance {
    queries: QueryOptimizer
  }
}

export const queryStatsConfigFragment = {
  properties: {
    QUERY_STATS_ENABLED: { type: 'boolean', default: true, description: 'Measure every query by fingerprint (false: the query seam has no subscriber)' },
    SLOW_QUERY_THRESHOLD_MS: { type: 'integer', default: 1000, minimum: 1, description: 'A query slower than this is logged (normalized text, duration) and listed as slow' }
  }
} as const satisfies ConfigFragment

export interface QueryStatsConfig {
  QUERY_STATS_ENABLED: boolean
  SLOW_QUERY_THRESHOLD_MS: number
}

/** Statistics per normalized query from the db-pool seam (`app.queries`), slow queries logged with their normalized text. */
export const queryStatsPlugin = fp(async (app: FastifyInstance, opts: { slowThresholdMs?: number, optimizer?: QueryOptimizer, enabled?: boolean }) => {
  await loadQueryParser()
  const optimizer = opts.optimizer ?? new QueryOptimizer({
    slowThresholdMs: opts.slowThresholdMs ?? 1000,
    onSlowQuery: (slow) => app.log.warn({ fingerprint: slow.fingerprint, query: slow.query, durationMs: Math.round(slow.durationMs), traceId: slow.traceId }, 'slow query')
  })
  app.decorate('queries', optimizer)
  // The trace a slow query belongs to, so it can be opened in Jaeger (no-op when tracing is off).
  const stop = trackQueries({ optimizer, traceId: () => trace.getActiveSpan()?.spanContext().traceId })
  app.addHook('onClose', async () => stop())
}, { name: 'query-stats', fastify: '5.x' })
