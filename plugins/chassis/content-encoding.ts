import type { FastifyReply, FastifyRequest } from 'fastify'
import { ChassisErrors } from './errors.js'

/**
 * The refusal (415, with `Accept-Encoding: identity`, as RFC 9110 asks) of a request whose body comes in a content
 * coding (`Content-Encoding: gzip`, `br`, ...), or undefined: no route decodes one, so its compressed bytes would be
 * read as the body itself, a JSON body refused as malformed and an import's rows as text that is not UTF-8, answered
 * 200 with every row rejected. A request without a body passes whatever the header says; the coding is not echoed.
 * Called from the chassis's onRequest hook, before any body is read.
 */
export function encodedBodyRefusal (request: FastifyRequest, reply: FastifyReply): Error | undefined {
  const headers = request.headers
  const coding = headers['content-encoding']
  if (coding === undefined) return undefined
  const length = headers['content-length']
  if (headers['transfer-encoding'] === undefined && (length === undefined || Number(length) === 0)) return undefined
  // A list of codings (`gzip, identity`): refused if any is one; empty entries and identity are none.
  if (coding.split(',').every((named) => { const name = named.trim().toLowerCase(); return name === '' || name === 'identity' })) return undefined
  void reply.header('accept-encoding', 'identity')
  return new ChassisErrors.UNSUPPORTED_MEDIA_TYPE('the body is sent in a content coding (Content-Encoding); send it unencoded')
}
