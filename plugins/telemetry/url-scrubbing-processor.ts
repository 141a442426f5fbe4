import type { Context } from '@opentelemetry/api'
import type { tracing } from '@opentelemetry/sdk-node'
// The file, not the chassis's entry: the preload loads this before the SDK starts, and the entry would load Fastify
// before its instrumentation is in place.
import { scrubQuery, scrubUrl } from '../chassis/redact.js'

const URL_ATTRIBUTES = ['url.full', 'url.path', 'http.target', 'http.url', 'url.original']
const QUERY_ATTRIBUTES = ['url.query']

/**
 * Scrubs secrets from the URL attributes of every span before it is exported: the server span's `url.path`
 * (@fastify/otel records the request target with its query string), the HTTP and undici client spans' `url.full`,
 * `url.query` and the older `http.target`/`http.url`. One processor instead of a hook per instrumentation, so an
 * instrumentation added later (or one setting an attribute after start) is covered too. It runs in `onEnding`, while
 * the span can still be changed, after every attribute is set.
 */
export class UrlScrubbingProcessor implements tracing.SpanProcessor {
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
  }

  onEnd (): void {}
  async forceFlush (): Promise<void> {}
  async shutdown (): Promise<void> {}
}
