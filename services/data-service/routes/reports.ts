import type { FastifyInstance } from 'fastify'
import { EARLIEST_DATE, errorBodySchema } from '@lead-chassis/plugins/chassis'
import { sendCached } from '@lead-chassis/plugins/cache'
import { REPORT_TAGS } from '../../domain/lead-cache.js'
import { PRODUCTS } from '../../domain/lead-schemas.js'
import type { SchemaTypes } from '../../platform/schema-types.js'
import { DataServiceErrors } from '../errors.js'
import { GROUPINGS, ReportsRepository, type DateRange } from '../reports-repository.js'

export interface ReportRoutesOptions {
  /** Seconds a report stays cached (it is invalidated sooner by any change to what it counts). */
  ttl: number
  cache: boolean
}

const MAX_DAYS = 366
const day = { type: 'string', format: 'date' } as const
const rangeQuery = { from: day, to: day } as const
const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }

/**
 * The range asked for, by default the last 30 days up to today (UTC), never before the first day the database
 * holds; at most a year, and from before to.
 */
function rangeOf (query: { from?: string, to?: string }): DateRange {
  const to = query.to ?? new Date().toISOString().slice(0, 10)
  const from = query.from ?? new Date(Math.max(Date.parse(to) - 29 * 86400000, Date.parse(EARLIEST_DATE))).toISOString().slice(0, 10)
  const days = (Date.parse(to) - Date.parse(from)) / 86400000
  if (days < 0 || days >= MAX_DAYS) throw new DataServiceErrors.INVALID_RANGE(from, to, MAX_DAYS)
  return { from, to }
}

/**
 * `/data/v1/reports`: aggregates too costly for every request, so cached (bytes and ETag) and tagged: a change to
 * leads (api, import, routing) invalidates the lead reports, a routing decision the agent report.
 */
export async function reportRoutes (instance: FastifyInstance, opts: ReportRoutesOptions): Promise<void> {
  const app = instance.withTypeProvider<SchemaTypes>()
  const reports = new ReportsRepository(app.db)
  const config = { requiredScope: 'reports:read', errorCodes: { 400: ['INVALID_RANGE'] } }
  // A cached answer's loader is kept for refresh-ahead: it captures the values it needs, never the request.
  const serve = async <T>(request: Parameters<typeof sendCached>[1], reply: Parameters<typeof sendCached>[2], key: string, tags: string[], load: () => Promise<T>): Promise<T | undefined> =>
    opts.cache ? sendCached(app.cache, request, reply, { key: `data:report:${key}`, ttl: opts.ttl, tags }, load) : load()

  app.get('/leads', {
    config,
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { ...rangeQuery, groupBy: { type: 'string', enum: GROUPINGS, default: 'status' } } },
      response: {
        200: { type: 'object', properties: { groupBy: { type: 'string' }, from: day, to: day, total: { type: 'integer' }, groups: { type: 'array', items: { type: 'object', properties: { key: { type: 'string' }, count: { type: 'integer' } } } } } },
        ...errors
      }
    }
  }, async (request, reply) => {
    const range = rangeOf(request.query)
    const { groupBy } = request.query
    return serve(request, reply, `leads:${groupBy}:${range.from}:${range.to}`, [REPORT_TAGS.leads], () => reports.leadsBy(groupBy, range))
  })

  app.get('/funnel', {
    config,
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { ...rangeQuery, product: { type: 'string', enum: PRODUCTS } } },
      response: {
        200: {
          type: 'object',
          properties: {
            from: day, to: day, product: { type: ['string', 'null'] }, total: { type: 'integer' }, lost: { type: 'integer' },
            stages: { type: 'array', items: { type: 'object', properties: { stage: { type: 'string' }, count: { type: 'integer' }, rate: { type: 'number' } } } }
          }
        },
        ...errors
      }
    }
  }, async (request, reply) => {
    const range = rangeOf(request.query)
    const { product } = request.query
    return serve(request, reply, `funnel:${product ?? '*'}:${range.from}:${range.to}`, [REPORT_TAGS.leads], () => reports.funnel(range, product))
  })

  app.get('/agents', {
    config,
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: rangeQuery },
      response: {
        200: {
          type: 'object',
          properties: {
            from: day,
            to: day,
            agents: {
              type: 'array',
              items: {
                type: 'object',
                properties: { id: { type: 'string' }, name: { type: 'string' }, capacity: { type: 'integer' }, activeLeads: { type: 'integer' }, assigned: { type: 'integer' }, converted: { type: 'integer' }, conversionRate: { type: 'number' } }
              }
            }
          }
        },
        ...errors
      }
    }
  }, async (request, reply) => {
    const range = rangeOf(request.query)
    return serve(request, reply, `agents:${range.from}:${range.to}`, [REPORT_TAGS.leads, REPORT_TAGS.assignments], () => reports.agentPerformance(range))
  })
}
