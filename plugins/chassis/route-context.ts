import type { FastifyContextConfig, FastifyRequest } from 'fastify'

interface RouteContext { config?: FastifyContextConfig & { url?: string }, schema?: { params?: unknown, querystring?: unknown } }

// `request.routeOptions` builds a new object of a dozen fields (and asks the router whether any route is versioned)
// on every read, and the hooks every request passes read it three times. The route's config and pattern are also
// held by the route context Fastify keeps on each request under a private symbol, found by its description once;
// on a Fastify that keeps it otherwise, `routeOptions` is read.
let contextSymbol: symbol | null | undefined

function contextOf (request: FastifyRequest): RouteContext | undefined {
  if (contextSymbol === undefined) {
    const found = Object.getOwnPropertySymbols(request).find((s) => s.description === 'fastify.context')
    const value = found && (request as unknown as Record<symbol, unknown>)[found]
    contextSymbol = found !== undefined && value !== null && typeof value === 'object' ? found : null
  }
  return contextSymbol === null ? undefined : (request as unknown as Record<symbol, RouteContext>)[contextSymbol]
}

/** The matched route's config: `request.routeOptions.config`, without building `routeOptions`. */
export function routeConfigOf (request: FastifyRequest): FastifyContextConfig {
  const context = contextOf(request)
  return (context === undefined ? request.routeOptions.config : context.config) as FastifyContextConfig
}

/** The matched route's pattern (`/api/v1/leads/:id`), undefined when none matched: `request.routeOptions.url`. */
export function routePatternOf (request: FastifyRequest): string | undefined {
  const context = contextOf(request)
  return context === undefined ? request.routeOptions.url : context.config?.url
}

/** The matched route's config and schema (a 404's: no `config.url`), without building `routeOptions`. */
export function routeContextOf (request: FastifyRequest): RouteContext {
  return contextOf(request) ?? request.routeOptions as RouteContext
}
