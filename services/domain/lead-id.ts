import type { FastifyRequest, RouteOptions } from 'fastify'
import { leadIdParamsSchema } from './lead-schemas.js'

const URN_PREFIX = 'urn:uuid:'

/**
 * The one spelling of a lead id: lower case, hyphenated, no `urn:uuid:` prefix. The params schema (format uuid)
 * accepts upper case and the URN too; PostgreSQL refuses the URN, and a cache key per spelling would leave the
 * others stale after a change, so every id is made canonical before it reaches a query or a cache key.
 */
export function canonicalLeadId (id: string): string {
  const lower = id.toLowerCase()
  return lower.startsWith(URN_PREFIX) ? lower.slice(URN_PREFIX.length) : lower
}

async function canonicalIdParam (request: FastifyRequest): Promise<void> {
  const params = request.params as { id: string }
  params.id = canonicalLeadId(params.id)
}

/**
 * An onRoute hook: every route whose params are `leadIdParamsSchema` gets its `id` made canonical after validation
 * (preHandler), before its handler runs, so a route added later cannot forget it.
 */
export function canonicalLeadIdRoutes (route: RouteOptions): void {
  if (route.schema?.params !== leadIdParamsSchema) return
  const existing = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler]
  route.preHandler = [canonicalIdParam, ...existing]
}
