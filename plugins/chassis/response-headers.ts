import type { FastifyReply, FastifyRequest } from 'fastify'
import { SECURITY_HEADERS } from './security-headers.js'

// API answers are private to their caller: no shared cache (CDN, proxy) stores one unless a route says otherwise
// (cached reads send `private, no-cache` with an ETag, so a client can revalidate).
const EVERY_RESPONSE: Record<string, string> = { ...SECURITY_HEADERS, 'cache-control': 'no-store' }

// Fastify keeps a reply's headers in one object under a private symbol, and `reply.headers` stores them one
// `reply.header` call at a time (a lower-casing and a keyed store each); past 16 names added that way V8 turns the
// object into a hash table, rebuilt for every request (an answer of the api carries some twenty). Copied in as one
// object, the fixed headers make a fast object that the later ones extend. The symbol is found by its description
// once; on a Fastify that keeps headers otherwise, or when an earlier hook set one, `reply.headers` is used.
let store: symbol | null | undefined

function headerStore (reply: FastifyReply): symbol | null {
  if (store === undefined) {
    const found = Object.getOwnPropertySymbols(reply).find((s) => s.description === 'fastify.reply.headers')
    const value = found && (reply as unknown as Record<symbol, unknown>)[found]
    store = found !== undefined && value !== null && typeof value === 'object' && !Array.isArray(value) ? found : null
  }
  return store
}

function isEmpty (headers: object): boolean {
  for (const _name in headers) return false
  return true
}

/**
 * The object a reply keeps its headers in, for a hook on every request's path to write lower-case names into
 * directly: `reply.header` lower-cases each name and looks it up before storing it, through a keyed access that
 * sees every header name (a tenth of the headers' cost per request). Undefined on a Fastify that keeps them
 * otherwise: use `reply.header` then.
 */
export function replyHeaderObject (reply: FastifyReply): Record<string, string | number | string[]> | undefined {
  const symbol = headerStore(reply)
  return symbol === null ? undefined : (reply as unknown as Record<symbol, Record<string, string | number | string[]> | undefined>)[symbol]
}

/** Gives a reply what every answer carries (errors and 404s too): the security headers, no-store, its request id. */
export function setEveryResponseHeaders (request: FastifyRequest, reply: FastifyReply): void {
  const symbol = headerStore(reply)
  const own = symbol === null ? undefined : (reply as unknown as Record<symbol, object>)[symbol]
  if (symbol !== null && own !== undefined && isEmpty(own)) {
    (reply as unknown as Record<symbol, object>)[symbol] = { ...EVERY_RESPONSE, 'x-request-id': request.id }
    return
  }
  void reply.headers(EVERY_RESPONSE).header('x-request-id', request.id)
}
