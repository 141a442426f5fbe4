import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { errorBody } from './error-body.js'
import { ChassisErrors } from './errors.js'

/** Headers as a reply holds them (`reply.getHeaders()`). */
type ReplyHeaders = Record<string, string | number | readonly string[] | undefined>

// The headers this answer writes itself, whatever the reply it stands for had gathered.
const OWN_HEADERS: ReadonlySet<string> = new Set(['connection', 'content-type', 'content-length', 'transfer-encoding'])

/**
 * Writes the platform's error body straight on the connection, then closes it: for what is refused where Fastify's
 * reply can no longer send it (a broken request, a WebSocket handshake the ws library refuses). `headers` are those
 * the request's reply had gathered (`reply.getHeaders()`: rate limit, request id, security headers), so the answer
 * carries what any other answer of its route does.
 */
export function answerOnSocket (socket: Duplex, error: { statusCode: number, code: string, message: string }, headers: ReplyHeaders = {}): void {
  answerAndClose(socket, error.statusCode, error.code, error.message, headers)
}

function answerAndClose (socket: Duplex, statusCode: number, code: string, message: string, headers: ReplyHeaders = {}): void {
  const body = JSON.stringify(errorBody(statusCode, code, message))
  let head = ''
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || OWN_HEADERS.has(name.toLowerCase())) continue
    // Written without Node's checks: a line break in a value would end the head early, so that value is left out.
    for (const one of [value].flat()) if (!/[\r\n]/.test(String(one))) head += `${name}: ${String(one)}\r\n`
  }
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${statusCode} ${errorBody(statusCode, '', '').error}\r\n${head}Connection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy()
}

// How long a route that took a request's timeout has to begin its own answer before the connection gets the plain one.
const TAKEN_TIMEOUT_GRACE_MS = 1000

interface Taken { request: IncomingMessage, response: ServerResponse, onTimeout: () => void }

// The connections whose request in flight answers REQUEST_TIMEOUT_MS itself: a WeakMap, so a connection that closes
// without its route letting go is not held.
const takers = new WeakMap<Socket, Taken>()

/**
 * Hands Node's REQUEST_TIMEOUT_MS for `request` to the route: when its body is still arriving at the deadline,
 * `onTimeout` is called instead of the plain 408 being written on the connection, and the route answers on
 * `response` (with what it did so far, say). Node counts the deadline from the request's first byte, before any route
 * sees it, so a route's own timer cannot be sure to come first. Whatever the route does, the connection closes: its
 * answer goes with Connection: close (the rest of a late body is never read as a next request), and a route that has
 * not begun one a second after the deadline gets the plain 408 instead. Released when `response` closes, or by the
 * function returned.
 */
export function takeRequestTimeout (request: IncomingMessage, response: ServerResponse, onTimeout: () => void): () => void {
  const socket = request.socket
  const taken: Taken = { request, response, onTimeout }
  takers.set(socket, taken)
  const release = (): void => { if (takers.get(socket) === taken) takers.delete(socket) }
  response.once('close', release)
  return release
}

/** Calls the route that took the request's timeout, and closes the connection after its answer or in its stead. */
function handOver (socket: Socket, taken: Taken, requestTimeoutMs: number): void {
  takers.delete(socket)
  // The route's answer closes the connection (Connection: close), so the rest of the late body is never read as a
  // next request.
  taken.response.shouldKeepAlive = false
  try {
    taken.onTimeout()
  } catch {
    // Thrown from Node's own timer, it would end the process: a route that throws here gets the plain answer below.
  }
  setTimeout(() => {
    if (socket.destroyed) return
    if (!taken.response.headersSent) {
      const error = new ChassisErrors.REQUEST_TIMEOUT(requestTimeoutMs)
      answerAndClose(socket, error.statusCode, error.code, error.message)
    } else if (taken.response.writableFinished) {
      socket.destroySoon()
    } else {
      taken.response.once('close', () => { socket.destroySoon() })
    }
  }, TAKEN_TIMEOUT_GRACE_MS).unref()
}

/**
 * Answers what Node's HTTP parser refuses before any route sees it (a request that took longer than
 * REQUEST_TIMEOUT_MS to arrive, oversized headers, broken HTTP) with the platform's error body, then closes the
 * connection. Fastify's default handler writes a body without `code`.
 */
export function clientErrorHandler (requestTimeoutMs: number): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    // A request timed out after its answer began (a route that answers before the body has arrived): a second
    // answer would follow the first in the socket, and cutting the connection would cut the first short.
    if ((socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true) {
      socket.end()
      return
    }
    // Only for the request that took it and is still arriving: a later request on the connection (pipelined behind
    // it) that times out gets the plain answer.
    const taken = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? takers.get(socket) : undefined
    if (taken !== undefined && !taken.request.complete) {
      handOver(socket, taken, requestTimeoutMs)
      return
    }
    const error = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ChassisErrors.REQUEST_TIMEOUT(requestTimeoutMs)
      : err.code === 'HPE_HEADER_OVERFLOW' ? new ChassisErrors.HEADERS_TOO_LARGE() : new ChassisErrors.MALFORMED_REQUEST()
    answerAndClose(socket, error.statusCode, error.code, error.message)
  }
}

/**
 * Answers CONNECT (a tunnel, which no route opens) as any method no route takes: 404 NOT_FOUND. Node hands CONNECT to
 * the server's `connect` listeners instead of the routes, and without one closes the connection without a word. The
 * target (`host:port`, any text) is not echoed.
 */
export function refuseConnect (_request: IncomingMessage, socket: Duplex): void {
  answerAndClose(socket, 404, 'NOT_FOUND', 'Route CONNECT not found')
}

/**
 * Answers an Expect header other than 100-continue (Node's `checkExpectation`) with 417 EXPECTATION_FAILED and the
 * platform's error body, then closes the connection: Node's own 417 has no body. The expectation is not echoed.
 */
export function refuseExpectation (_request: IncomingMessage, response: ServerResponse): void {
  const error = new ChassisErrors.EXPECTATION_FAILED()
  const body = JSON.stringify(errorBody(error.statusCode, error.code, error.message))
  response.writeHead(error.statusCode, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body)
}
