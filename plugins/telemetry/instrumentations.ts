import { getNodeAutoInstrumentations } from '@opentelemetry/auto-instrumentations-node'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { Instrumentation } from '@opentelemetry/instrumentation'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'

/**
 * The instrumentations every service runs with (the preload's, and the in-process span tests').
 *
 * One server span per request, made by @fastify/otel, which knows the route and continues the caller's W3C trace
 * context; the HTTP instrumentation traces outgoing calls only, so there is no second server span and none of its
 * per-request emitter binding. Under the server span: the Redis spans, one span per query (no pool-connect spans)
 * and the client spans of calls to other services. OTEL_FASTIFY_DETAIL=true adds a span per hook and handler.
 * `npm run bench:tracing -- --variant` compares shapes side by side; the README gives the measured cost.
 */
export async function createInstrumentations (): Promise<Instrumentation[]> {
  await loadQueryParser()
  const detail = process.env.OTEL_FASTIFY_DETAIL === 'true'
  return [
    ...getNodeAutoInstrumentations({
      '@opentelemetry/instrumentation-fs': { enabled: false },
      '@opentelemetry/instrumentation-net': { enabled: false },
      '@opentelemetry/instrumentation-dns': { enabled: false },
      '@opentelemetry/instrumentation-http': { disableIncomingRequestInstrumentation: true },
      '@opentelemetry/instrumentation-pg': {
        ignoreConnectSpans: true,
        // Database spans carry the query's fingerprint, so a span and its line in the query statistics match.
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
      requestHook: (span, request) => { span.updateName(`${request.method} ${request.routeOptions.url ?? 'unmatched'}`) }
    })
  ]
}
