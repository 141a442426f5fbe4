import { subscribe } from 'node:diagnostics_channel'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
// The file, not the chassis's entry: the preload loads this before Fastify's instrumentation is in place.
import { trustsCallerTrace } from '../chassis/caller-trace.js'

/** The trace-context headers of the propagation formats the SDK may be set to read: W3C, B3, Jaeger. */
const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags', 'uber-trace-id']

/**
 * For @fastify/otel (OTEL_FASTIFY_DETAIL=true), which continues every caller's trace context itself: an onRequest
 * hook ahead of its own (subscribed first, so added first) removes the trace-context headers of a caller the app does
 * not trust with them (caller-trace.ts), so that request starts a trace of its own, as with the chassis's server
 * spans. Added to every Fastify instance for the life of the process, as the instrumentation it serves.
 */
export function dropUntrustedTraceHeaders (): void {
  const onInitialization = (message: unknown): void => {
    const app = (message as { fastify: FastifyInstance }).fastify
    app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
      if (!trustsCallerTrace(request)) {
        for (const name of Object.keys(request.headers)) if (TRACE_HEADERS.includes(name) || name.startsWith('uberctx-')) delete request.headers[name]
      }
      done()
    })
  }
  subscribe('fastify.initialization', onInitialization)
}
