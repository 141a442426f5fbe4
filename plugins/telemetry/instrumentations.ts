import { getNodeAutoInstrumentations } from '@opentelemetry/auto-instrumentations-node'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { Instrumentation } from '@opentelemetry/instrumentation'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'

/** The instrumentations every service runs with (the preload's, and the in-process span test's). */
export async function createInstrumentations (): Promise<Instrumentation[]> {
  await loadQueryParser()
  return [
    ...getNodeAutoInstrumentations({
      // @fastify/otel makes the Fastify spans; the generic one would duplicate them. File system spans are noise.
      '@opentelemetry/instrumentation-fastify': { enabled: false },
      '@opentelemetry/instrumentation-fs': { enabled: false },
      '@opentelemetry/instrumentation-net': { enabled: false },
      '@opentelemetry/instrumentation-dns': { enabled: false },
      // Database spans carry the query's fingerprint, so a span and its line in the query statistics match.
      '@opentelemetry/instrumentation-pg': {
        requestHook: (span, info) => {
          if (info.query.text) span.setAttribute('db.query.fingerprint', normalizeQuery(info.query.text).fingerprint)
        }
      }
    }),
    // One span per hook of every request: OTEL_FASTIFY_ENABLED=false keeps only the HTTP server span.
    ...(process.env.OTEL_FASTIFY_ENABLED === 'false' ? [] : [new FastifyOtelInstrumentation({ registerOnInitialization: true })])
  ]
}
