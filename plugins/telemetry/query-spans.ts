import { tracingChannel } from 'node:diagnostics_channel'
import { SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api'
import { QUERY_CHANNEL_NAME, type QueryContext } from '../db-pool/channel.js'
import { normalizeQuery } from './query-normalizer.js'
import { insideUnsampledSpan, parentBasedSampler } from './unsampled.js'

/** The instrumentation scope of database spans. */
export const QUERY_SPANS_SCOPE = 'lead-chassis/db-pool'

interface SpannedQuery extends QueryContext {
  span?: Span
}

const OPERATION = /^\s*([A-Za-z]+)/

/**
 * One CLIENT span per query through the db-pool seam, under the caller's span, with the stable database semantic
 * conventions (db.system.name, db.namespace, db.query.text, db.operation.name, server.address, server.port, and
 * error.type with db.response.status_code on failure) and the query's fingerprint (db.query.fingerprint), so a span
 * and its line in the query statistics match.
 *
 * Made here instead of by the pg instrumentation, which wraps every call to pg's Client.query and binds its callbacks
 * to the active context: the seam already sees each query start and end, so the span adds only the SDK's own work.
 * `npm run bench:query-spans` compares the two. Returns the function that unsubscribes.
 */
export function traceQueries (tracer: Tracer = trace.getTracer(QUERY_SPANS_SCOPE), parentBased = parentBasedSampler()): () => void {
  const channel = tracingChannel<SpannedQuery, SpannedQuery>(QUERY_CHANNEL_NAME)
  const handlers = {
    start: (ctx: SpannedQuery) => {
      // Under a parent-based sampler a query of an unsampled request would get a span that records nothing: none is
      // started (the SDK would still run the sampler and make the span object).
      if (parentBased && insideUnsampledSpan()) return
      const operation = OPERATION.exec(ctx.text)?.[1]?.toUpperCase()
      // Named `{db.operation.name} {db.namespace}`, as the conventions ask when no query summary is known, else
      // `{db.system.name}`.
      const name = operation === undefined ? 'postgresql' : ctx.database === undefined ? operation : `${operation} ${ctx.database}`
      const span = ctx.span = tracer.startSpan(name, { kind: SpanKind.CLIENT })
      // A query the sampler declines gets a span that records nothing: its attributes (and the fingerprint) would
      // be built for nobody.
      if (!span.isRecording()) return
      const attributes: Attributes = {
        'db.system.name': 'postgresql',
        'db.query.text': ctx.text,
        'db.query.fingerprint': normalizeQuery(ctx.text).fingerprint
      }
      if (ctx.database !== undefined) attributes['db.namespace'] = ctx.database
      if (operation !== undefined) attributes['db.operation.name'] = operation
      if (ctx.host !== undefined) attributes['server.address'] = ctx.host
      if (ctx.port !== undefined) attributes['server.port'] = ctx.port
      span.setAttributes(attributes)
    },
    end: () => {},
    asyncStart: () => {},
    error: (ctx: SpannedQuery) => {
      const error = ctx.error as { sqlState?: string, code?: string, message?: string } | undefined
      const type = error?.sqlState ?? error?.code ?? 'Error'
      if (error?.sqlState !== undefined) ctx.span?.setAttribute('db.response.status_code', error.sqlState)
      ctx.span?.setAttribute('error.type', type)
      ctx.span?.setStatus({ code: SpanStatusCode.ERROR, ...(error?.message === undefined ? {} : { message: error.message }) })
    },
    asyncEnd: (ctx: SpannedQuery) => { ctx.span?.end() }
  }
  channel.subscribe(handlers)
  return () => channel.unsubscribe(handlers)
}
