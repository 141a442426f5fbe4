import type { FastifyInstance } from 'fastify'

/** The scope whose holders share NGINX's micro-cache of lead reads. */
export const EDGE_SHARED_SCOPE = 'leads:read'

/**
 * `/api/v1/edge/auth`: NGINX's auth subrequest in front of its shared micro-cache (deploy/nginx/nginx.conf). It
 * always answers 204; `X-Edge-Scope` names the shared scope when the caller's key is valid and holds it, and only
 * such callers are served from, and stored into, the shared cache. Everyone else, a key that is not valid
 * included, goes through to the routes, which count and answer them as always (401, 403). NGINX keeps the answer
 * per key for a few seconds and never exposes the route. It is not rate limited: NGINX asks once per key per cache
 * period, and a 429 here would break the caller's request.
 */
export async function edgeRoutes (app: FastifyInstance): Promise<void> {
  app.get('/auth', {
    config: { rateLimit: false, apiKeyReportOnly: true },
    schema: { summary: 'NGINX\'s auth subrequest (never exposed)', response: { 204: { description: 'X-Edge-Scope names the shared scope when the key is valid and holds it', type: 'null' } } }
  }, async (request, reply) => {
    if (!request.internalService && request.apiKey?.scopes.includes(EDGE_SHARED_SCOPE)) void reply.header('x-edge-scope', EDGE_SHARED_SCOPE)
    return reply.header('cache-control', 'private, no-store').code(204).send()
  })
}
