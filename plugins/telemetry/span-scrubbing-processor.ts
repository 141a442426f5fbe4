import { SpanStatusCode, type Context } from '@opentelemetry/api'
import type { tracing } from '@opentelemetry/sdk-node'
// The file, not the chassis's entry: the preload loads this before the SDK starts, and the entry would load Fastify
// before its instrumentation is in place.
import { scrubQuery, scrubUrl } from '../chassis/redact.js'

const URL_ATTRIBUTES = ['url.full', 'url.path', 'http.target', 'http.url', 'url.original']
const QUERY_ATTRIBUTES = ['url.query']
const PG_SCOPE = '@opentelemetry/instrumentation-pg'

/**
 * Scrubs what instrumentations copy verbatim into a span, before it is exported:
 * - secrets in URLs: the server span's `url.path` (the request target with its query string, as the server span records it),
 *   the HTTP and undici client spans' `url.full`, `url.query` and the older `http.target`/`http.url`;
 * - the PostgreSQL server's message in the status of the pg instrumentation's spans (OTEL_PG_INSTRUMENTATION=true):
 *   data exceptions quote the rejected value (`invalid input syntax for type uuid: "..."`); the instrumentation's
 *   exception event keeps the SQLSTATE. (The db-pool seam's spans carry the pool's own messages, never a value.)
 * One processor instead of a hook per instrumentation, so an instrumentation added later, or an attribute set after
 * the span started, is covered too. It runs in `onEnding`, while the span can still be changed.
 */
export class SpanScrubbingProcessor implements tracing.SpanProcessor {
  onStart (_span: tracing.Span, _context: Context): void {}

  onEnding (span: tracing.Span): void {
    const attributes = span.attributes
    for (const key of URL_ATTRIBUTES) {
      const value = attributes[key]
      if (typeof value === 'string') {
        const scrubbed = scrubUrl(value)
        if (scrubbed !== value) span.setAttribute(key, scrubbed)
      }
    }
    for (const key of QUERY_ATTRIBUTES) {
      const value = attributes[key]
      if (typeof value === 'string') {
        const scrubbed = scrubQuery(value)
        if (scrubbed !== value) span.setAttribute(key, scrubbed)
      }
    }
    if (span.status.code === SpanStatusCode.ERROR && span.status.message !== undefined && span.instrumentationScope.name === PG_SCOPE) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'PostgreSQL error' })
    }
  }

  onEnd (): void {}
  async forceFlush (): Promise<void> {}
  async shutdown (): Promise<void> {}
}
