// Loaded with `node --import` before anything else, so that HTTP, Fastify, pg and ioredis are instrumented.
// With no exporter configured (no OTEL_EXPORTER_OTLP_ENDPOINT, no OTEL_TRACES_EXPORTER) nothing is started at all.
import { register } from 'node:module'

const configured = Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
  (process.env.OTEL_TRACES_EXPORTER && process.env.OTEL_TRACES_EXPORTER !== 'none'))

if (configured) {
  // Stable semantic conventions for HTTP and database spans (db.query.text, db.system.name, ...).
  process.env.OTEL_SEMCONV_STABILITY_OPT_IN ??= 'http,database'
  // ESM imports are instrumented through import-in-the-middle's loader hook.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
  const { NodeSDK } = await import('@opentelemetry/sdk-node')
  const { getNodeAutoInstrumentations } = await import('@opentelemetry/auto-instrumentations-node')
  const { FastifyOtelInstrumentation } = await import('@fastify/otel')
  const { loadQueryParser, normalizeQuery } = await import('./query-normalizer.js')
  await loadQueryParser()
  const sdk = new NodeSDK({
    instrumentations: [
      getNodeAutoInstrumentations({
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
  })
  sdk.start()
  process.once('beforeExit', () => { void sdk.shutdown() })
}
