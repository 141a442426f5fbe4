import type { FastifyRequest } from 'fastify'
import { scrubUrl } from './redact.js'

/**
 * Fastify's request serializer, with the URL's secrets scrubbed: a key sent in the query string (and refused) would
 * otherwise be written whole into the `incoming request` line of every log.
 */
export function requestLogValue (request: FastifyRequest): Record<string, unknown> {
  return {
    method: request.method,
    url: scrubUrl(request.url),
    version: request.headers['accept-version'],
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}
