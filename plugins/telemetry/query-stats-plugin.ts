import fp from 'fastify-plugin'
import { trace } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import { loadQueryParser } from './query-normalizer.js'
import { TelemetryErrors } from './errors.js'
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
  /**
   * Sets the statistics' slow-query threshold, in ms. The threshold is the statistics', shared by every app that
   * uses them (the process's by default), with `enabled: false` too (`@QueryTracking` still records into them): an
   * app that asks for another one while an open app holds its own is refused (QUERY_STATS_INVALID_OPTIONS, at
   * registration or at ready); give it `statistics` of its own. @default the statistics' own (1000)
   */
  slowThresholdMs?: number
  /** @default the process's `queryStatistics` */
  statistics?: QueryStatistics
}

// Which threshold the ready apps of the process hold on each statistics, and how many hold it.
const heldThresholds = new WeakMap<QueryStatistics, { ms: number, apps: number }>()

function refuseConflict (statistics: QueryStatistics, ms: number): void {
  const held = heldThresholds.get(statistics)
  if (held !== undefined && held.apps > 0 && held.ms !== ms) {
    throw new TelemetryErrors.QUERY_STATS_INVALID_OPTIONS(`slowThresholdMs ${ms} conflicts with ${held.ms}, which another open app set on the same statistics; pass statistics of its own (new QueryStatistics())`)
  }
}

/**
 * Refuses a threshold another open app holds otherwise, at registration and again when the app is ready (two apps
 * may register before either is ready); held from this plugin's ready hook until close, so an app whose
 * registration failed holds none (one whose ready failed later holds it until it is closed). A second app in the
 * process (a test, two services in one) would otherwise change the first one's silently.
 */
function holdThreshold (app: FastifyInstance, statistics: QueryStatistics, ms: number): void {
  refuseConflict(statistics, ms)
  // Written now too, so that the app's queries before it is ready (a migration at boot) are held to it: no open
  // app holds another.
  statistics.slowThresholdMs = ms
  let holding: { ms: number, apps: number } | undefined
  app.addHook('onReady', async () => {
    refuseConflict(statistics, ms)
    const held = heldThresholds.get(statistics)
    holding = held !== undefined && held.apps > 0 ? held : { ms, apps: 0 }
    holding.apps++
    heldThresholds.set(statistics, holding)
    statistics.slowThresholdMs = ms
  })
  app.addHook('onClose', async () => {
    if (holding !== undefined) holding.apps--
    holding = undefined
  })
}

/**
 * Statistics per normalized query from the db-pool seam (`app.queries`), slow queries logged with their normalized
 * text. Disabled, `app.queries` is still there (it holds what `@QueryTracking` records) but no query reaches it.
 */
export const queryStatsPlugin = fp(async (app: FastifyInstance, opts: QueryStatsPluginOptions) => {
  const statistics = opts.statistics ?? queryStatistics
  app.decorate('queries', statistics)
  if (opts.slowThresholdMs !== undefined) holdThreshold(app, statistics, opts.slowThresholdMs)
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
