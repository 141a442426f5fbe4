import type { FastifyRequest } from 'fastify'
import { requestUrl } from './request-url.js'

/**
 * Fastify's request serializer, with the URL as `requestUrl` shows it: a key sent in the query string (and refused),
 * or a lead's name or phone sent as a path segment or a filter, would otherwise be written whole into the
 * `incoming request` line of every log.
 */
export function requestLogValue (request: FastifyRequest): Record<string, unknown> {
  return {
    method: request.method,
    url: requestUrl(request),
    version: request.headers['accept-version'],
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}
