import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { errorBody } from './error-body.js'
import { noteRouteWords } from './request-url.js'
import { ChassisErrors } from './errors.js'
import { SECURITY_HEADERS } from './security-headers.js'

/** The longest path parameter the router reads (Fastify's default, stated so the error message can name it). */
export const MAX_PARAM_LENGTH = 100

/**
 * The path a refused request is routed on instead of its own: no route has it, so the request reaches the
 * not-found handler, and it is what the request's log lines and span show in place of a URL that may be hostile
 * (megabytes of escapes) or carry a key in its query string.
 */
export const REFUSED_URL_PATH = '/.refused-url'

type Refusal = 'BAD_URL' | 'PATH_SEGMENT_TOO_LONG'

const refusals = new WeakMap<IncomingMessage, Refusal>()

function refusalError (refusal: Refusal): FastifyError {
  return refusal === 'BAD_URL' ? new ChassisErrors.BAD_URL() : new ChassisErrors.PATH_SEGMENT_TOO_LONG(MAX_PARAM_LENGTH)
}

/** The error a request answers when the router refused its URL; undefined for every other request. */
export function refusalOf (request: FastifyRequest): FastifyError | undefined {
  const refusal = refusals.get(request.raw)
  return refusal === undefined ? undefined : refusalError(refusal)
}

type RawHandler = (path: string, req: IncomingMessage, res: ServerResponse) => void

export interface RefusedUrlRouting {
  /** The router's `onBadUrl` and `onMaxParamLength`, for Fastify's `routerOptions`. */
  routerOptions: { onBadUrl: RawHandler, onMaxParamLength: RawHandler }
  /** The app whose routing a refused request goes through again, once Fastify has made it. */
  attach: (app: FastifyInstance) => void
}

/**
 * What the router refuses (a broken percent-escape, a path parameter over MAX_PARAM_LENGTH) is routed again, on
 * REFUSED_URL_PATH, to the not-found handler, which answers the refusal's error. Fastify's own answer, through
 * `frameworkErrors`, runs no hook: such a request was neither rate limited, nor counted in the request metrics, nor
 * logged as completed, so a client could send them without limit and unseen. Through routing it takes the hook chain
 * of every unmatched request (the limiter and its identity, the metrics' `unmatched` route, the span, the headers).
 */
export function refusedUrlRouting (): RefusedUrlRouting {
  // The path is the chassis's own word, not a caller's: logs and spans show it, as they show a route's words.
  noteRouteWords(REFUSED_URL_PATH)
  let app: FastifyInstance | undefined
  const reroute = (refusal: Refusal): RawHandler => (_path, req, res) => {
    // Refused again (or before the app exists): answered here, as routing it again would never end.
    if (app === undefined || refusals.has(req)) {
      const error = refusalError(refusals.get(req) ?? refusal)
      res.writeHead(error.statusCode ?? 400, { ...SECURITY_HEADERS, 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8' })
      res.end(JSON.stringify(errorBody(error.statusCode ?? 400, error.code, error.message)))
      return
    }
    refusals.set(req, refusal)
    req.url = REFUSED_URL_PATH
    app.routing(req, res)
  }
  return {
    routerOptions: { onBadUrl: reroute('BAD_URL'), onMaxParamLength: reroute('PATH_SEGMENT_TOO_LONG') },
    attach: (instance) => { app = instance }
  }
}

function answerRefusal (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const refused = refusalOf(request)
  if (refused === undefined) done()
  else done(refused)
}

/**
 * An onRoute hook: a route whose first segment is a parameter or a wildcard (`/*`, `/:slug`) matches
 * REFUSED_URL_PATH, so a refused request would reach its handler instead of the not-found handler. Such a route
 * answers a refused request with the refusal from a preValidation hook of its own, after the hooks every request
 * runs (the limiter among them); no other route gets the hook, so no other request pays for it.
 */
export function guardRefusedUrls (route: RouteOptions): void {
  // Fastify takes a pattern without its leading slash too (`*`), which matches every path as `/*` does.
  const first = (route.url.startsWith('/') ? route.url.slice(1) : route.url).split('/')[0] ?? ''
  if (!first.includes(':') && !first.includes('*')) return
  const existing = route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation]
  route.preValidation = [answerRefusal, ...existing]
}
