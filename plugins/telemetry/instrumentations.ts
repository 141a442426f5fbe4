import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { Instrumentation } from '@opentelemetry/instrumentation'
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
// The file, not the chassis's entry: the preload loads this before Fastify's instrumentation is in place.
import { requestUrl } from '../chassis/request-url.js'
import { correlateSampledLogLines } from './log-correlation.js'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'
import { traceQueries } from './query-spans.js'
import { redisStatement, unsampledSkipped } from './redis-statement.js'
import { traceRedisCommands } from './redis-spans.js'
import { ServerSpanInstrumentation } from './server-spans.js'
import { dropUntrustedTraceHeaders } from './caller-trace-gate.js'

// The scopes of the query and server spans, for whoever builds their own SDK with these instrumentations and filters spans.
export { QUERY_SPANS_SCOPE } from './query-spans.js'
export { SERVER_SPANS_SCOPE } from './server-spans.js'
// The OTLP/HTTP JSON serializer the preload's exporter uses, for such an SDK's exporter too.
export { otlpJsonTraceSerializer } from './otlp-json.js'
// The preload's id generator, and what createInstrumentations does to the pino instrumentation, for the same reason.
export { PooledIdGenerator } from './id-generator.js'
export { RootSampling } from './root-sampling.js'
export { correlateSampledLogLines } from './log-correlation.js'
// What the preload does to the ioredis instrumentation and to the SDK's tracers, for the same reason.
export { traceRedisCommands } from './redis-spans.js'
export { redisStatement } from './redis-statement.js'
export { skipSpanCountMetrics } from './span-count-metrics.js'
export { insideUnsampledSpan } from './unsampled.js'
// The processor that scrubs every span before the preload's exporters, for such an SDK's processors too.
export { SpanScrubbingProcessor } from './span-scrubbing-processor.js'

/**
 * The instrumentations every service runs with (the preload's, and the in-process span tests').
 *
 * Only the libraries the services use are instrumented: one instrumentation each, not the ~40 of
 * auto-instrumentations-node, whose extra members (the runtime's event-loop monitors among them) ran whether or not
 * anything was sampled or any metric exported. One server span per request (server-spans.ts), named after the route,
 * continuing the caller's W3C trace context; the HTTP instrumentation traces outgoing calls only, so there is no
 * second server span. Under the server span: the Redis spans, one span per query (made at the db-pool seam once
 * `startQuerySpans` is called; no pool-connect spans) and the client spans of calls to other services (undici, http).
 * OTEL_FASTIFY_DETAIL=true has @fastify/otel make the server span instead, with a span per hook and handler.
 * `npm run bench:tracing-instructions` counts what tracing costs per request; docs/observability.md gives the figures.
 */
export async function createInstrumentations (): Promise<Instrumentation[]> {
  await loadQueryParser()
  const detail = enabled(process.env.OTEL_FASTIFY_DETAIL)
  // The serializer serves the instrumentation's own wrapper only if the chassis's cannot take its place (redis-spans.ts).
  const ioredis = new IORedisInstrumentation({ dbStatementSerializer: unsampledSkipped(redisStatement) })
  // Its spans are made by the chassis's wrapper, which starts none in an unsampled request (redis-spans.ts).
  traceRedisCommands(ioredis)
  // Log lines are not also turned into OTLP log records unless a logs exporter is asked for: the instrumentation would
  // parse every line again for a provider that drops it.
  const pino = new PinoInstrumentation({ disableLogSending: (process.env.OTEL_LOGS_EXPORTER ?? 'none') === 'none' })
  // A sampled request's lines keep their trace and span ids; an unsampled one's carry none (log-correlation.ts).
  correlateSampledLogLines(pino)
  // Before @fastify/otel subscribes, so its hook comes first (caller-trace-gate.ts).
  if (detail) dropUntrustedTraceHeaders()
  const instrumentations: Instrumentation[] = [
    new HttpInstrumentation({ disableIncomingRequestInstrumentation: true }),
    new UndiciInstrumentation(),
    pino,
    // Redis spans carry the command and its keys only: cached leads travel as values and Lua script arguments.
    ioredis,
    detail
      ? new FastifyOtelInstrumentation({
        // Its onRequest hook is then the first one, so the chassis's own hooks (API key, rate limit) run inside the span.
        registerOnInitialization: true,
        instrumentHooks: true,
        instrumentHandler: true,
        requestHook: (span, request) => {
          if (!span.isRecording()) return
          span.updateName(`${request.method} ${request.routeOptions.url ?? 'unmatched'}`)
          // It records the request target as sent; a name or phone in it must not be exported.
          span.setAttribute('url.path', requestUrl(request))
        }
      })
      : new ServerSpanInstrumentation()
  ]
  // The runtime's metrics (event loop, heap, GC) only when a metrics exporter is asked for: by default metrics go to
  // Prometheus (/metrics), and its event-loop monitors would run for a provider that drops what they measure.
  if ((process.env.OTEL_METRICS_EXPORTER ?? 'none') !== 'none') {
    const { RuntimeNodeInstrumentation } = await import('@opentelemetry/instrumentation-runtime-node')
    instrumentations.push(new RuntimeNodeInstrumentation())
  }
  // Database spans are made at the db-pool query seam (query-spans.ts), one per query, never twice; with
  // OTEL_PG_INSTRUMENTATION=true the pg instrumentation makes them instead, for clients outside the pool too.
  if (pgInstrumentation()) {
    instrumentations.push(new PgInstrumentation({
      ignoreConnectSpans: true,
      // The statement text only, never the values bound to it (they are leads' names, emails and phones).
      enhancedDatabaseReporting: false,
      requestHook: (span, info) => {
        if (info.query.text) span.setAttribute('db.query.fingerprint', normalizeQuery(info.query.text).fingerprint)
      }
    }))
  }
  return instrumentations
}

// Read as the SDK reads a boolean (OTEL_SDK_DISABLED): `true` in any case, spaces trimmed.
const enabled = (value: string | undefined): boolean => value?.trim().toLowerCase() === 'true'
const pgInstrumentation = (): boolean => enabled(process.env.OTEL_PG_INSTRUMENTATION)

/** Database spans from the db-pool query seam; called once the SDK has started. Returns the function that stops them. */
export function startQuerySpans (): () => void {
  return pgInstrumentation() ? () => {} : traceQueries()
}
