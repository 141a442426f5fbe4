import { SpanStatusCode, type AttributeValue, type Context } from '@opentelemetry/api'
import type { tracing } from '@opentelemetry/sdk-node'
// The file, not the chassis's entry: the preload loads this before the SDK starts, and the entry would load Fastify
// before its instrumentation is in place.
import { scrubQuery, scrubUrl } from '../chassis/redact.js'

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
    // Each attribute read by its name: a read by a key from a list, over the attributes of every shape of span, went
    // through V8's megamorphic keyed lookup, six times a span.
    const attributes = span.attributes
    scrubAttribute(span, 'url.full', attributes['url.full'], scrubUrl)
    scrubAttribute(span, 'url.path', attributes['url.path'], scrubUrl)
    scrubAttribute(span, 'http.target', attributes['http.target'], scrubUrl)
    scrubAttribute(span, 'http.url', attributes['http.url'], scrubUrl)
    scrubAttribute(span, 'url.original', attributes['url.original'], scrubUrl)
    scrubAttribute(span, 'url.query', attributes['url.query'], scrubQuery)
    if (span.status.code === SpanStatusCode.ERROR && span.status.message !== undefined && span.instrumentationScope.name === PG_SCOPE) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'PostgreSQL error' })
    }
  }

  onEnd (): void {}
  async forceFlush (): Promise<void> {}
  async shutdown (): Promise<void> {}
}

function scrubAttribute (span: tracing.Span, key: string, value: AttributeValue | undefined, scrub: (text: string) => string): void {
  if (typeof value !== 'string') return
  const scrubbed = scrub(value)
  if (scrubbed !== value) span.setAttribute(key, scrubbed)
}
