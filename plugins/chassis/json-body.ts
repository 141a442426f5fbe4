import type { FastifyInstance } from 'fastify'
import { ChassisErrors } from './errors.js'

// A media type's parameters (RFC 9110 8.3.1): a name, then a token or a quoted string. Every charset parameter is
// read, so a second one (`charset=utf-8; charset=utf-16`) cannot hide behind the first.
const CHARSET = /;\s*charset\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/gi
// The labels of UTF-8 in the WHATWG Encoding standard, which browsers send and honour.
const UTF8_LABELS: ReadonlySet<string> = new Set(['utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8'])

/** Whether a content type declares no charset, or UTF-8 in every charset parameter it has. */
function declaresUtf8 (contentType: string): boolean {
  for (const match of contentType.matchAll(CHARSET)) {
    const value = match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : (match[2] ?? '')
    if (!UTF8_LABELS.has(value.toLowerCase())) return false
  }
  return true
}

/**
 * Replaces Fastify's JSON parser with one that refuses a body declared in another charset (415): the bytes of a
 * `charset=utf-16` or `latin1` body read as UTF-8 are garbled or refused as invalid JSON, and a Latin-1 name would be
 * stored with replacement characters. The charset is not echoed: the header is the caller's text.
 */
export function refuseJsonInOtherCharsets (app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser(app.initialConfig.onProtoPoisoning ?? 'error', app.initialConfig.onConstructorPoisoning ?? 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (!declaresUtf8(request.headers['content-type'] ?? '')) return done(new ChassisErrors.UNSUPPORTED_MEDIA_TYPE('a JSON body must be UTF-8 (charset=utf-8, or no charset)'), undefined)
    parse(request, body as string, done)
  })
}
