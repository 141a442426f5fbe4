import { getNodeAutoInstrumentations } from '@opentelemetry/auto-instrumentations-node'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { Instrumentation } from '@opentelemetry/instrumentation'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'
import { traceQueries } from './query-spans.js'
import { redisStatement, unsampledSkipped } from './redis-statement.js'
import { parentBasedSampler, skipUnsampledRedisCommands } from './unsampled.js'

// The scope of the query spans, for whoever builds their own SDK with these instrumentations and filters spans.
export { QUERY_SPANS_SCOPE } from './query-spans.js'

/**
 * The instrumentations every service runs with (the preload's, and the in-process span tests').
 *
 * One server span per request, made by @fastify/otel, which knows the route and continues the caller's W3C trace
 * context; the HTTP instrumentation traces outgoing calls only, so there is no second server span and none of its
 * per-request emitter binding. Under the server span: the Redis spans, one span per query (made at the db-pool seam
 * once `startQuerySpans` is called; no pool-connect spans) and the client spans of calls to other services.
 * OTEL_FASTIFY_DETAIL=true adds a span per hook and handler.
 * `npm run bench:tracing -- --variant` compares shapes side by side; docs/benchmarks.md gives the measured cost.
 */
export async function createInstrumentations (): Promise<Instrumentation[]> {
  await loadQueryParser()
  const detail = process.env.OTEL_FASTIFY_DETAIL === 'true'
  const instrumentations = [
    ...getNodeAutoInstrumentations({
      '@opentelemetry/instrumentation-fs': { enabled: false },
      '@opentelemetry/instrumentation-net': { enabled: false },
      '@opentelemetry/instrumentation-dns': { enabled: false },
      '@opentelemetry/instrumentation-http': { disableIncomingRequestInstrumentation: true },
      // Log lines keep their trace and span ids, but are not also turned into OTLP log records unless a logs
      // exporter is asked for: the instrumentation would parse every line again for a provider that drops it.
      '@opentelemetry/instrumentation-pino': { disableLogSending: (process.env.OTEL_LOGS_EXPORTER ?? 'none') === 'none' },
      // Redis spans carry the command and its keys only: cached leads travel as values and Lua script arguments.
      '@opentelemetry/instrumentation-ioredis': { dbStatementSerializer: unsampledSkipped(redisStatement) },
      '@opentelemetry/instrumentation-redis': { dbStatementSerializer: unsampledSkipped(redisStatement) },
      // Database spans are made at the db-pool query seam (query-spans.ts), one per query, never twice; with
      // OTEL_PG_INSTRUMENTATION=true the pg instrumentation makes them instead, for clients outside the pool too.
      '@opentelemetry/instrumentation-pg': {
        enabled: pgInstrumentation(),
        ignoreConnectSpans: true,
        // The statement text only, never the values bound to it (they are leads' names, emails and phones).
        enhancedDatabaseReporting: false,
        requestHook: (span, info) => {
          if (info.query.text) span.setAttribute('db.query.fingerprint', normalizeQuery(info.query.text).fingerprint)
        }
      }
    }),
    new FastifyOtelInstrumentation({
      // Its onRequest hook is then the first one, so the chassis's own hooks (API key, rate limit) run inside the span.
      registerOnInitialization: true,
      instrumentHooks: detail,
      instrumentHandler: detail,
      requestHook: (span, request) => { if (span.isRecording()) span.updateName(`${request.method} ${request.routeOptions.url ?? 'unmatched'}`) }
    })
  ]
  if (parentBasedSampler()) {
    const ioredis = instrumentations.find((i) => i.instrumentationName === '@opentelemetry/instrumentation-ioredis')
    if (ioredis) skipUnsampledRedisCommands(ioredis)
  }
  return instrumentations
}

const pgInstrumentation = (): boolean => process.env.OTEL_PG_INSTRUMENTATION === 'true'

/** Database spans from the db-pool query seam; called once the SDK has started. Returns the function that stops them. */
export function startQuerySpans (): () => void {
  return pgInstrumentation() ? () => {} : traceQueries()
}
