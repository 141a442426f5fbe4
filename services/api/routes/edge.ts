import type { FastifyInstance } from 'fastify'
import type { FastifyError } from 'fastify'
import { ApiKeyErrors } from '@lead-chassis/plugins/api-keys'
import { errorBodySchema } from '@lead-chassis/plugins/chassis'
import { cidrMatcher } from '@lead-chassis/plugins/rate-limit'

/** The scope whose holders share NGINX's micro-cache of lead reads. */
const EDGE_SHARED_SCOPE = 'leads:read'

export interface EdgeRoutesOptions {
  /** TRUST_PROXY: the proxies (NGINX) allowed to ask; every other peer gets 404. */
  trustedProxies: string
}

/**
 * `/api/v1/edge/auth`: NGINX's auth subrequest in front of its shared micro-cache (deploy/nginx/nginx.conf). A key
 * that is not valid (malformed, unknown, revoked) gets 401, which NGINX answers itself without asking the routes.
 * Otherwise 204; `X-Edge-Scope` names the shared scope when the caller's key is valid and holds it, and only such
 * callers are served from, and stored into, the shared cache. Everyone else (no key, a key without the scope) goes
 * through to the routes, which count and answer them as always. NGINX keeps the answer per key for a few seconds
 * and never exposes the route. It is not rate limited (NGINX asks once per key per cache period, and a 429 here
 * would break the caller's request), but the key's lookup is charged to the caller's lookup budget like any other.
 * It answers only the trusted proxies, the direct peers whose X-Forwarded-For the service believes: on a service
 * port it is no verification oracle for anyone else, who gets 404 as for an unknown route.
 */
export async function edgeRoutes (app: FastifyInstance, opts: EdgeRoutesOptions): Promise<void> {
  const trusted = cidrMatcher(opts.trustedProxies.split(','))
  app.get('/auth', {
    config: { rateLimit: false, apiKeyReportOnly: true, errorCodes: { 401: ['INVALID_API_KEY'], 403: ['API_KEY_LOOKUPS_EXCEEDED'], 404: ['NOT_FOUND'] } },
    schema: {
      summary: 'NGINX\'s auth subrequest (never exposed; trusted proxies only, 404 for anyone else)',
      response: { 204: { description: 'X-Edge-Scope names the shared scope when the key is valid and holds it', type: 'null' }, 401: errorBodySchema, 403: errorBodySchema }
    },
    // NGINX's auth_request passes only 401 and 403 on and takes anything else for "no verdict", which sends the
    // request to the api again: a caller over its lookup budget gets 403 here, which NGINX answers as its JSON 429.
    errorHandler: (error: FastifyError) => {
      // The same error and body, answered by the chassis's handler with the status NGINX understands.
      if (error.code === 'API_KEY_LOOKUPS_EXCEEDED') error.statusCode = 403
      throw error
    }
  }, async (request, reply) => {
    if (!trusted(request.socket.remoteAddress ?? '')) return reply.callNotFound()
    if (request.apiKeyRejected) throw new ApiKeyErrors.INVALID_API_KEY()
    if (!request.internalService && request.apiKey?.scopes.includes(EDGE_SHARED_SCOPE)) void reply.header('x-edge-scope', EDGE_SHARED_SCOPE)
    return reply.header('cache-control', 'private, no-store').code(204).send()
  })
}
