import type { Socket } from 'node:net'
import { errorBody } from './error-body.js'
import { ChassisErrors } from './errors.js'

/**
 * Answers what Node's HTTP parser refuses before any route sees it (a request that took longer than
 * REQUEST_TIMEOUT_MS to arrive, oversized headers, broken HTTP) with the platform's error body, then closes the
 * connection. Fastify's default handler writes a body without `code`.
 */
export function clientErrorHandler (requestTimeoutMs: number): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const error = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ChassisErrors.REQUEST_TIMEOUT(requestTimeoutMs)
      : err.code === 'HPE_HEADER_OVERFLOW' ? new ChassisErrors.HEADERS_TOO_LARGE() : new ChassisErrors.MALFORMED_REQUEST()
    const body = JSON.stringify(errorBody(error.statusCode, error.code, error.message))
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${error.statusCode} ${errorBody(error.statusCode, '', '').error}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    }
    socket.destroy()
  }
}
