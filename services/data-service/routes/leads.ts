import type { FastifyInstance } from 'fastify'
import { HttpError, errorBodySchema } from '../../../plugins/chassis/index.js'
import { LEAD_COLUMNS, LeadsRepository } from '../../domain/leads-repository.js'
import { PRODUCTS, US_STATES, leadIdParamsSchema, leadSchema, type Lead } from '../../domain/lead-schemas.js'

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
  }, async (request) => {
    const { limit, product, state } = request.query
    // New leads with no active assignment, oldest first: the routing queue.
    const { rows } = await app.db.query<Lead>(
      `SELECT ${LEAD_COLUMNS} FROM leads l
        WHERE status = 'new' AND ($2::text IS NULL OR product = $2) AND ($3::text IS NULL OR state = $3)
          AND NOT EXISTS (SELECT 1 FROM lead_assignments a WHERE a.lead_id = l.id AND a.status = 'active')
        ORDER BY created_at, id LIMIT $1`, [limit, product ?? null, state ?? null])
    return { data: rows }
  })

  app.get<{ Params: { id: string } }>('/:id', {
    config,
    schema: { params: leadIdParamsSchema, response: { 200: leadSchema, ...errors } }
  }, async (request) => {
    const lead = await leads.get(request.params.id)
    if (!lead) throw new HttpError(404, 'LEAD_NOT_FOUND', `Lead ${request.params.id} not found`)
    return lead
  })
}
