import { getNodeAutoInstrumentations } from '@opentelemetry/auto-instrumentations-node'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { Instrumentation } from '@opentelemetry/instrumentation'
import type { FastifyInstance } from 'fastify'
import { routesChannel, type RoutesMessage } from '../chassis/index.js'
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
    // OTEL_FASTIFY_ENABLED=false keeps only the HTTP server span.
    ...(process.env.OTEL_FASTIFY_ENABLED === 'false' ? [] : [fastifyInstrumentation()])
  ]
}

/**
 * @fastify/otel makes a span for every hook it sees added after it is registered. Registered on initialization it
 * would wrap the chassis's own hooks too (request id, metrics, API key, rate limit: about ten spans per request);
 * attached when the chassis announces the routes, it makes the request span and one per route hook and handler.
 */
function fastifyInstrumentation (): FastifyOtelInstrumentation {
  const instrumentation = new FastifyOtelInstrumentation({ registerOnInitialization: false })
  routesChannel.subscribe((message) => {
    if (!instrumentation.isEnabled()) return
    const { app } = message as RoutesMessage
    const plugin = instrumentation.plugin() as unknown as (app: FastifyInstance, opts: object, done: () => void) => void
    plugin(app, {}, () => {})
  })
  return instrumentation
}
