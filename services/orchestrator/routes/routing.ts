import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify'
import { errorAnswer, errorBodySchema } from '@lead-chassis/plugins/chassis'
import { LeadErrors } from '../../domain/errors.js'
import { REPORT_TAGS, changeTagsOf, leadKey } from '../../domain/lead-cache.js'
import { PRODUCTS, US_STATES, leadIdParamsSchema } from '../../domain/lead-schemas.js'
import { AssignmentRepository, type Assignment } from '../assignments.js'
import { OrchestratorErrors } from '../errors.js'
import { DataServiceApi, type DataServiceLead } from '../data-service.js'
import type { SchemaTypes } from '../../platform/schema-types.js'
import type { EventHub } from '../events.js'
import { scoreLead } from '../scoring.js'

/** What a batch skips and reports instead of failing: a lead it cannot assign right now. */
function skippable (error: unknown): error is FastifyError {
  return error instanceof OrchestratorErrors.LEAD_BUSY || error instanceof OrchestratorErrors.ALREADY_ASSIGNED ||
    error instanceof OrchestratorErrors.NO_AGENT_AVAILABLE
}

export interface RoutingRoutesOptions {
  events: EventHub
  batchMax: number
}

type UpstreamBody = { code?: string, message?: string } | undefined

/** An unexpected answer of the data-service: its 400 or 422 was caused by the caller's input, anything else is a 502. */
function upstreamFailure (status: number, body: UpstreamBody): Error {
  const message = typeof body === 'object' && typeof body?.message === 'string' ? body.message : ''
  if (status === 400 || status === 422) return new OrchestratorErrors.UPSTREAM_REFUSED_INPUT(message || `answered ${status}`)
  return new OrchestratorErrors.UPSTREAM_ERROR(status, message)
}

const outcomeSchema = { type: 'object', properties: { leadId: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } } } as const
const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }
const ruleSchema = { type: 'object', properties: { rule: { type: 'string' }, points: { type: 'integer' } } } as const
const assignmentSchema = {
  type: 'object',
  properties: {
    leadId: { type: 'string' }, agentId: { type: 'string' }, agentName: { type: 'string' }, score: { type: 'integer' },
    assignedAt: { type: 'string', format: 'date-time' }, rules: { type: 'array', items: ruleSchema }
  }
} as const

/** `/orchestrator/v1`: score a lead, route one lead, route a batch of the unassigned queue. */
export async function routingRoutes (instance: FastifyInstance, opts: RoutingRoutesOptions): Promise<void> {
  const app = instance.withTypeProvider<SchemaTypes>()
  const assignments = new AssignmentRepository(app.db)
  const client = app.services['data-service']
  if (!client) throw new Error('the orchestrator needs the data-service client')
  const dataService = new DataServiceApi(client)
  const config = { requiredScope: 'routing', errorCodes: { 400: ['UPSTREAM_REFUSED_INPUT'], 502: ['UPSTREAM_ERROR'], 503: ['UPSTREAM_UNAVAILABLE'] } }
  const routeOne = { ...config, errorCodes: { ...config.errorCodes, 404: ['LEAD_NOT_FOUND'], 409: ['LEAD_BUSY', 'ALREADY_ASSIGNED', 'NO_AGENT_AVAILABLE'] } }

  /**
   * The lead, from the data-service (404 passed on; the data-service down is a 503 from the client). `id` was
   * validated and made canonical by the params schema and its hook before this call.
   */
  const fetchLead = async (id: string): Promise<DataServiceLead> => {
    const res = await dataService.lead(id)
    // Its own LEAD_NOT_FOUND only: a 404 of a path it does not serve (a DATA_SERVICE_URL that names another service,
    // or versions apart) is not news that the lead does not exist.
    if (res.status === 404 && res.body?.code === 'LEAD_NOT_FOUND') throw new LeadErrors.LEAD_NOT_FOUND(id)
    if (res.status !== 200) throw upstreamFailure(res.status, res.body)
    return res.body
  }

  const route = async (request: FastifyRequest, lead: DataServiceLead): Promise<Assignment & { rules: ReturnType<typeof scoreLead>['rules'] }> => {
    const { score, rules } = scoreLead(lead)
    const done = await assignments.assign(lead.id, score, request.apiKey ? `key:${request.apiKey.id}` : 'orchestrator')
    // The lead's score changed and it left the routing queue: its cached copies, its lists and the reports go.
    await app.cache.invalidate({ keys: [leadKey(lead.id)], tags: [...changeTagsOf(done.lead), REPORT_TAGS.assignments] })
    await opts.events.publish({ type: 'lead.assigned', leadId: done.leadId, agentId: done.agentId, agentName: done.agentName, score, assignedAt: done.assignedAt.toISOString() })
    return { ...done, rules }
  }

  app.get('/leads/:id/score', {
    config: { ...config, errorCodes: { ...config.errorCodes, 404: ['LEAD_NOT_FOUND'] } },
    schema: { params: leadIdParamsSchema, response: { 200: { type: 'object', properties: { leadId: { type: 'string' }, score: { type: 'integer' }, rules: { type: 'array', items: ruleSchema } } }, ...errors } }
  }, async (request) => {
    const lead = await fetchLead(request.params.id)
    return { leadId: lead.id, ...scoreLead(lead) }
  })

  app.post('/leads/:id/route', {
    config: routeOne,
    schema: { params: leadIdParamsSchema, response: { 200: assignmentSchema, ...errors } }
  }, async (request) => route(request, await fetchLead(request.params.id)))

  app.post('/route-batch', {
    config,
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { limit: { type: 'integer', minimum: 1, maximum: opts.batchMax, default: 20 }, product: { type: 'string', enum: PRODUCTS }, state: { type: 'string', enum: US_STATES } }
      },
      response: {
        200: {
          type: 'object',
          properties: {
            assigned: { type: 'array', items: assignmentSchema },
            skipped: { type: 'array', items: outcomeSchema },
            stopped: { ...outcomeSchema, description: 'The lead whose failure stopped the batch after others were assigned; the leads after it were not tried' }
          }
        },
        ...errors
      }
    }
  }, async (request) => {
    const { limit, product, state } = request.body ?? { limit: 20 }
    const res = await dataService.unassigned({ limit, product, state })
    if (res.status !== 200) throw upstreamFailure(res.status, res.body as unknown as UpstreamBody)
    const assigned = []
    const skipped = []
    // One transaction per lead: a lead another call is routing is skipped, not waited for.
    for (const lead of res.body.data ?? []) {
      try {
        assigned.push(await route(request, lead))
      } catch (error) {
        if (skippable(error)) {
          skipped.push({ leadId: lead.id, code: error.code, message: error.message })
          continue
        }
        // Nothing committed yet: the failure is the answer. Otherwise the leads already assigned (committed, their
        // events sent) are answered with the one that stopped the batch, not hidden behind an error status.
        if (assigned.length === 0) throw error
        const answered = errorAnswer(error)
        if (answered.statusCode >= 500) request.log.error({ err: error, leadId: lead.id }, 'batch routing stopped after assigning some leads')
        return { assigned, skipped, stopped: { leadId: lead.id, code: answered.code, message: answered.message } }
      }
    }
    return { assigned, skipped }
  })
}
