import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { SpanKind, SpanStatusCode, TraceFlags, context, propagation, trace, type Context, type Span } from '@opentelemetry/api'
import { InstrumentationBase, type InstrumentationConfig } from '@opentelemetry/instrumentation'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
// The file, not the chassis's entry: the preload loads this before Fastify's instrumentation is in place.
import { noteRoute, requestUrl } from '../chassis/request-url.js'
import { routePatternOf } from '../chassis/route-context.js'
import { trustsCallerTrace } from '../chassis/caller-trace.js'
import { RootSampling, sdkTracer, startsTrace } from './root-sampling.js'
import { contextWithSpan } from './span-context.js'
import { parentBasedSampler } from './unsampled.js'

/** The instrumentation scope of the server spans. */
export const SERVER_SPANS_SCOPE = 'lead-chassis/fastify'

const kSpan = Symbol('lead-chassis server span')
const kErrorRecorded = Symbol('lead-chassis server span error recorded')
interface Traced { [kSpan]: Span | null, [kErrorRecorded]: boolean }
type TracedRequest = FastifyRequest & Traced

/**
 * One SERVER span per request of every Fastify instance, named `METHOD /route` with `http.request.method`,
 * `url.path` (the request target as the chassis's `requestUrl` shows it: what the route does not allow is
 * `[REDACTED]`), `http.route` and `http.response.status_code`, errors recorded; the caller's W3C trace context continued
 * when the app trusts the caller with it (`kTrustsCallerTrace`: with `./api-keys`, callers presenting the service key).
 * Its `onRequest` hook is the instance's first (added when Fastify publishes `fastify.initialization`), and runs the
 * rest of the request in the span's context.
 *
 * Written here rather than taken from @fastify/otel: that plugin starts a span for every request, sampled or not, and
 * adds an onSend and an onError hook to every route, where three instance hooks do. Here a request whose caller's trace is not sampled, under a parent-based sampler, starts no span
 * at all: it runs in the caller's propagated context, which is all that its log lines, its outgoing calls'
 * `traceparent` and the Redis and query seams need. Nor does a request that starts a trace its sampler declines: it
 * runs in a context that holds the new trace's ids and flags (root-sampling.ts). @fastify/otel stays for OTEL_FASTIFY_DETAIL=true, which wants a
 * span per hook and handler.
 */
export class ServerSpanInstrumentation extends InstrumentationBase {
  constructor (config: InstrumentationConfig = {}) {
    super(SERVER_SPANS_SCOPE, '1.0.0', config)
  }

  protected init (): [] {
    return []
  }

  override enable (): void {
    // Called by the base class's constructor too, before this class's own fields would exist: hence no fields.
    const self = this as unknown as { _onFastify?: (message: unknown) => void }
    if (self._onFastify === undefined) {
      self._onFastify = (message) => { this.#instrument((message as { fastify: FastifyInstance }).fastify) }
      subscribe('fastify.initialization', self._onFastify)
    }
    super.enable()
  }

  override disable (): void {
    const self = this as unknown as { _onFastify?: (message: unknown) => void }
    if (self._onFastify !== undefined) {
      unsubscribe('fastify.initialization', self._onFastify)
      self._onFastify = undefined
    }
    super.disable()
  }

  #instrument (app: FastifyInstance): void {
    // Read once: the sampler is the SDK's, chosen from the environment at start.
    const followsParent = parentBasedSampler()
    // The SDK tracer's root sampling, looked up again only when the tracer changes (a proxy gets its delegate once
    // the SDK starts; setTracerProvider sets another).
    let sampling: { tracer: object, root: RootSampling | undefined } | undefined
    const rootSampling = (): RootSampling | undefined => {
      const tracer = sdkTracer(this.tracer)
      if (sampling?.tracer !== tracer) sampling = { tracer, root: RootSampling.of(this.tracer) }
      return sampling.root
    }
    // The path of a request no route matched shows only the words of the routes' paths; a query parameter's name
    // only when some route's schema declares it.
    app.addHook('onRoute', (route) => { noteRoute(route) })
    app.decorateRequest(kSpan, null)
    app.decorateRequest(kErrorRecorded, false)
    app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
      if (!this.isEnabled()) { done(); return }
      // A request handled inside a span (app.inject in a traced job) is its child; any other continues its caller's
      // trace if the caller is trusted with it (caller-trace.ts), and starts its own otherwise.
      const current = context.active()
      const parent = trace.getSpan(current) === undefined && trustsCallerTrace(request) ? propagation.extract(current, request.headers) : current
      let active: Context = parent
      // A new trace the sampler declines (nine in ten at the shipped sampling) needs its ids and flags, not the
      // SDK's span object (root-sampling.ts).
      const declined = startsTrace(parent) ? rootSampling()?.declined(parent) : undefined
      if (declined !== undefined) {
        active = declined
      } else if (!(followsParent && unsampledParent(parent))) {
        // Read from the route context: `request.routeOptions` builds an object of a dozen fields on every read.
        const route = routePatternOf(request)
        const span = this.tracer.startSpan(`${request.method} ${route ?? 'unmatched'}`, { kind: SpanKind.SERVER }, parent)
        active = contextWithSpan(parent, span)
        if (span.isRecording()) {
          span.setAttributes({ 'http.request.method': request.method, 'url.path': requestUrl(request) })
          if (route !== undefined) span.setAttribute('http.route', route)
          ;(request as TracedRequest)[kSpan] = span
          // A caller that hangs up before the answer gets no onResponse: without this its span would never end, and
          // the requests most worth seeing (the slow ones a client gave up on) would never be exported. A listener
          // on a recording span's request only, not Fastify's onRequestAbort hook, which adds one to every request.
          request.raw.once('close', () => { endAborted(request as TracedRequest) })
        }
      }
      context.with(active, done)
    })
    app.addHook('onError', (request: FastifyRequest, _reply: FastifyReply, error: Error, done: HookHandlerDoneFunction) => {
      const span = (request as TracedRequest)[kSpan]
      if (span !== null) {
        // A client error (4xx) leaves a server span's status unset (OpenTelemetry's HTTP conventions): error-rate
        // views count the server's failures, not callers' mistakes. Its exception event still says what was wrong.
        const status = (error as { statusCode?: unknown }).statusCode
        if (typeof status !== 'number' || status >= 500) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
          ;(request as TracedRequest)[kErrorRecorded] = true
        }
        span.recordException(error)
      }
      done()
    })
    app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      const span = (request as TracedRequest)[kSpan]
      if (span !== null) {
        if (reply.statusCode >= 500 && !(request as TracedRequest)[kErrorRecorded]) span.setStatus({ code: SpanStatusCode.ERROR })
        span.setAttribute('http.response.status_code', reply.statusCode)
        span.end()
        ;(request as TracedRequest)[kSpan] = null
      }
      done()
    })
  }
}

function endAborted (request: TracedRequest): void {
  const span = request[kSpan]
  if (span === null || !request.raw.aborted) return
  span.setAttribute('http.request.aborted', true)
  span.end()
  request[kSpan] = null
}

/** Whether the caller sent a valid trace context whose trace is not sampled. */
function unsampledParent (parent: Context): boolean {
  const caller = trace.getSpanContext(parent)
  return caller !== undefined && trace.isSpanContextValid(caller) && (caller.traceFlags & TraceFlags.SAMPLED) === 0
}
