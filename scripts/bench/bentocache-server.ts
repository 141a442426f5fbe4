import type { FastifyInstance } from 'fastify'
import { buildService, startService } from '@lead-chassis/plugins/chassis'
import { loadApiConfig } from '../../services/api/config.js'
import { ALL_LISTS_TAG, listKey, listTagFor } from '../../services/domain/lead-cache.js'
import { LeadsRepository } from '../../services/domain/leads-repository.js'
import { leadPageSchema, listLeadsQuerySchema, type LeadListQuery } from '../../services/domain/lead-schemas.js'
import { platformPlugins, preparePlatform } from '../../services/platform/platform.js'
import { createBentoCache, sendThroughBento } from './bentocache.js'

// bench:cache's cached route served through bentocache instead of our cache: the api's own platform (API key
// checked on every request, metrics, the same hooks), the same query, schema, key, tags and TTL, and the same
// answer (body, ETag, cache headers).
const config = loadApiConfig()
const { bento, close } = createBentoCache({ redisUrl: config.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix: `${config.CACHE_PREFIX}bento`, ttl: config.CACHE_TTL })

async function bentoLeadRoutes (app: FastifyInstance): Promise<void> {
  const leads = new LeadsRepository(app.db)
  app.get<{ Querystring: LeadListQuery }>('/', {
    config: { requiredScope: 'leads:read' },
    schema: { querystring: listLeadsQuerySchema, response: { 200: leadPageSchema } }
  }, async (request, reply) => sendThroughBento(bento, request, reply, { key: listKey(request.query), tags: [listTagFor(request.query), ALL_LISTS_TAG] }, () => leads.list(request.query)))
  app.addHook('onClose', close)
}

// As the api is built (services/api/app.ts): the platform's one-time loads before the app.
await startService('api', () => config, async (c) => {
  await preparePlatform(c)
  return buildService({
    name: 'api-bentocache',
    config: c,
    plugins: platformPlugins('api', c),
    routes: [(app) => app.register(bentoLeadRoutes, { prefix: '/api/v1/leads' })]
  })
})
