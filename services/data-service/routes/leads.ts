import type { FastifyInstance } from 'fastify'
import { HttpError, errorBodySchema } from '../../../plugins/chassis/index.js'
import { LeadsRepository } from '../../domain/leads-repository.js'
import { PRODUCTS, US_STATES, leadIdParamsSchema, leadSchema } from '../../domain/lead-schemas.js'

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }

/** `/data/v1/leads`: the lookups other services make (the orchestrator's lead details and its routing queue). */
export async function leadLookupRoutes (app: FastifyInstance): Promise<void> {
  const leads = new LeadsRepository(app.db)
  const config = { requiredScope: 'leads:read' }

  app.get<{ Querystring: { limit: number, product?: string, state?: string } }>('/unassigned', {
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

  app.get<{ Params: { id: string } }>('/:id', {
    config: { ...config, errorCodes: { 404: ['LEAD_NOT_FOUND'] } },
    schema: { params: leadIdParamsSchema, response: { 200: leadSchema, ...errors } }
  }, async (request) => {
    // Other services ask after events they were told of: the read sees every write committed before it.
    const lead = await app.db.freshReads(() => leads.get(request.params.id))
    if (!lead) throw new HttpError(404, 'LEAD_NOT_FOUND', `Lead ${request.params.id} not found`)
    return lead
  })
}
