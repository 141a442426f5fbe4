import { isUtf8 } from 'node:buffer'
import type { FastifyInstance } from 'fastify'
import { ChassisErrors } from './errors.js'
import { parseMediaType } from './media-type.js'

/**
 * Replaces Fastify's JSON parser with one that refuses a body declared in another charset (415): the bytes of a
 * `charset=utf-16` or `latin1` body read as UTF-8 are garbled or refused as invalid JSON, and a Latin-1 name would be
 * stored with replacement characters. A malformed Content-Type is refused 415 too: the charset it meant is unknown.
 * The charset is not echoed: the header is the caller's text. A body whose bytes are not UTF-8, whatever it declares
 * (a Latin-1 `é` sent with no charset), is refused 400 INVALID_JSON: read as a string, each bad byte would silently
 * become U+FFFD and be stored in a person's name.
 */
export function refuseJsonInOtherCharsets (app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser(app.initialConfig.onProtoPoisoning ?? 'error', app.initialConfig.onConstructorPoisoning ?? 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const mediaType = parseMediaType(request.headers['content-type'] ?? '')
    if (mediaType === undefined) return done(new ChassisErrors.UNSUPPORTED_MEDIA_TYPE('the Content-Type is malformed'), undefined)
    if (!mediaType.utf8) return done(new ChassisErrors.UNSUPPORTED_MEDIA_TYPE('a JSON body must be UTF-8 (charset=utf-8, us-ascii, or no charset)'), undefined)
    const bytes = body as Buffer
    if (!isUtf8(bytes)) return done(new ChassisErrors.INVALID_JSON('its bytes are not UTF-8'), undefined)
    parse(request, bytes.toString('utf8'), done)
  })
}
