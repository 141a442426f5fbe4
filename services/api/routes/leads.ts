import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errorBodySchema } from '@lead-chassis/plugins/chassis'
import { sendCached } from '@lead-chassis/plugins/cache'
import { ALL_LISTS_TAG, changeTagsOf, leadKey, listKey, listTagFor } from '../../domain/lead-cache.js'
import { LeadErrors } from '../../domain/errors.js'
import { LeadsRepository } from '../../domain/leads-repository.js'
import { leadSchemaErrors } from '../../domain/lead-schema-errors.js'
import {
  activityPageSchema, createLeadBodySchema, leadIdParamsSchema, leadPageSchema, leadSchema, listLeadsQuerySchema,
  pageQuerySchema, patchLeadBodySchema
} from '../../domain/lead-schemas.js'
import type { SchemaTypes } from '../../platform/schema-types.js'

export interface LeadRoutesOptions {
  bodyLimit: number
  /** Serve GETs through `app.cache` (serialized bytes and ETag); false sends every read to PostgreSQL. */
  cache: boolean
}

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema, 413: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }

/** Who made a change, for the audit trail: the key id, or anonymous for the capture form. */
function actorOf (request: FastifyRequest): string {
  return request.apiKey ? `key:${request.apiKey.id}` : 'anonymous'
}

/** `/api/v1/leads`: list with filters and keyset pages, read, create, patch, and the activity trail. */
export async function leadRoutes (instance: FastifyInstance, opts: LeadRoutesOptions): Promise<void> {
  const app = instance.withTypeProvider<SchemaTypes>()
  const leads = new LeadsRepository(app.db)

  const read = { requiredScope: 'leads:read' }
  // Codes of these routes' own, listed in the OpenAPI document beside the platform's.
  const readOne = { ...read, errorCodes: { 404: ['LEAD_NOT_FOUND'] } }
  app.get('/', {
    config: { ...read, errorCodes: { 400: ['INVALID_CURSOR'] } },
    schema: { querystring: listLeadsQuerySchema, response: { 200: leadPageSchema, ...errors } }
  }, (request, reply) => {
    if (!opts.cache) return leads.list(request.query)
    // The loader is kept for refresh-ahead: it captures the query, not the request. Not an async handler: a local
    // hit is answered before the handler returns, with no promise for Fastify to wait on.
    const query = request.query
    return sendCached(app.cache, request, reply, { key: listKey(query), tags: [listTagFor(query), ALL_LISTS_TAG] }, () => app.db.freshReads(() => leads.list(query)))
  })

  app.get('/:id', {
    config: readOne,
    schema: { params: leadIdParamsSchema, response: { 200: leadSchema, ...errors } }
  }, (request, reply) => {
    const { id } = request.params
    const load = async () => {
      const lead = await leads.get(id)
      if (!lead) throw new LeadErrors.LEAD_NOT_FOUND(id)
      return lead
    }
    // A cache fill outlives the request: it must not store what a lagging replica still shows (freshReads).
    return opts.cache ? sendCached(app.cache, request, reply, { key: leadKey(id) }, () => app.db.freshReads(load)) : load()
  })

  // The one anonymous door: the lead-capture form. A key, when presented, must carry leads:create.
  app.post('/', {
    config: { requiredScope: 'leads:create', anonymous: true, errorCodes: { 409: ['LEAD_DUPLICATE'] } },
    bodyLimit: opts.bodyLimit,
    schemaErrorFormatter: leadSchemaErrors,
    schema: { body: createLeadBodySchema, response: { 201: leadSchema, ...errors } }
  }, async (request, reply) => {
    const lead = await leads.create(request.body, actorOf(request))
    // Whether or not this instance serves from the cache: others sharing its Redis may, and must not keep the old lists.
    await app.cache.invalidateTags(changeTagsOf(lead))
    void reply.code(201).header('location', `/api/v1/leads/${lead.id}`)
    return lead
  })

  app.patch('/:id', {
    config: { requiredScope: 'leads:write', errorCodes: { 404: ['LEAD_NOT_FOUND'], 409: ['LEAD_DUPLICATE'] } },
    bodyLimit: opts.bodyLimit,
    schemaErrorFormatter: leadSchemaErrors,
    schema: { params: leadIdParamsSchema, body: patchLeadBodySchema, response: { 200: leadSchema, ...errors } }
  }, async (request) => {
    const changed = await leads.update(request.params.id, request.body, actorOf(request))
    if (!changed) throw new LeadErrors.LEAD_NOT_FOUND(request.params.id)
    if (changed.before !== changed.after) {
      await app.cache.invalidate({ keys: [leadKey(request.params.id)], tags: changeTagsOf(changed.before, changed.after) })
    }
    return changed.after
  })

  app.get('/:id/activities', {
    config: { ...readOne, errorCodes: { 404: ['LEAD_NOT_FOUND'], 400: ['INVALID_CURSOR'] } },
    schema: { params: leadIdParamsSchema, querystring: pageQuerySchema, response: { 200: activityPageSchema, ...errors } }
  }, async (request) => {
    const page = await leads.activities(request.params.id, request.query)
    if (!page) throw new LeadErrors.LEAD_NOT_FOUND(request.params.id)
    return page
  })
}
