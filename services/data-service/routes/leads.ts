import type { FastifyInstance } from 'fastify'
import { errorBodySchema } from '@lead-chassis/plugins/chassis'
import { LeadErrors } from '../../domain/errors.js'
import { LeadsRepository } from '../../domain/leads-repository.js'
import { PRODUCTS, US_STATES, leadIdParamsSchema, leadSchema } from '../../domain/lead-schemas.js'
import type { SchemaTypes } from '../../platform/schema-types.js'

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }

/** `/data/v1/leads`: the lookups other services make (the orchestrator's lead details and its routing queue). */
export async function leadLookupRoutes (instance: FastifyInstance): Promise<void> {
  const app = instance.withTypeProvider<SchemaTypes>()
  const leads = new LeadsRepository(app.db)
  const config = { requiredScope: 'leads:read' }

  app.get('/unassigned', {
    config,
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 }, product: { type: 'string', enum: PRODUCTS }, state: { type: 'string', enum: US_STATES } }
      },
      response: { 200: { type: 'object', properties: { data: { type: 'array', items: leadSchema } } }, ...errors }
    }
  }, async (request) => ({ data: await leads.unassigned(request.query) }))

  app.get('/:id', {
    config: { ...config, errorCodes: { 404: ['LEAD_NOT_FOUND'] } },
    schema: { params: leadIdParamsSchema, response: { 200: leadSchema, ...errors } }
  }, async (request) => {
    // Other services ask after events they were told of: the read sees every write committed before it.
    const lead = await app.db.freshReads(() => leads.get(request.params.id))
    if (!lead) throw new LeadErrors.LEAD_NOT_FOUND(request.params.id)
    return lead
  })
}
