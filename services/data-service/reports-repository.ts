import type { ConnectionPool } from '@lead-chassis/plugins/db-pool'

export const GROUPINGS = ['status', 'product', 'state', 'day'] as const
export type Grouping = typeof GROUPINGS[number]

export interface DateRange {
  /** First day, YYYY-MM-DD (UTC), inclusive. */
  from: string
  /** Last day, YYYY-MM-DD (UTC), inclusive. */
  to: string
}

const GROUP_SQL: Record<Grouping, string> = {
  status: 'status',
  product: 'product',
  state: 'state::text',
  day: `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
}

// Leads created in the range: from the first day's midnight (UTC) to the end of the last day.
const IN_RANGE = `created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND created_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'`

/** The reports: aggregate queries over leads and assignments, too costly to run per request (they are cached). */
export class ReportsRepository {
  readonly #db: ConnectionPool
  constructor (db: ConnectionPool) {
    this.#db = db
  }

  /** Leads created in the range, counted by one dimension. */
  async leadsBy (by: Grouping, range: DateRange): Promise<{ groupBy: Grouping, from: string, to: string, total: number, groups: Array<{ key: string, count: number }> }> {
    const { rows } = await this.#db.query<{ key: string, count: number }>(
      `SELECT ${GROUP_SQL[by]} AS key, count(*)::int AS count FROM leads WHERE ${IN_RANGE} GROUP BY 1 ORDER BY ${by === 'day' ? '1' : '2 DESC, 1'}`,
      [range.from, range.to], { read: 'primary' })
    return { groupBy: by, ...range, total: rows.reduce((n, r) => n + r.count, 0), groups: rows }
  }

  /**
   * The conversion funnel of the leads created in the range. Statuses are ordered new < contacted < qualified <
   * converted, so a stage counts every lead that reached it or went further; lost leads are counted on their own.
   */
  async funnel (range: DateRange, product?: string): Promise<{ from: string, to: string, product: string | null, total: number, lost: number, stages: Array<{ stage: string, count: number, rate: number }> }> {
    const { rows: [c] } = await this.#db.query<{ total: number, contacted: number, qualified: number, converted: number, lost: number }>(
      `SELECT count(*)::int AS total,
              count(*) FILTER (WHERE status IN ('contacted', 'qualified', 'converted'))::int AS contacted,
              count(*) FILTER (WHERE status IN ('qualified', 'converted'))::int AS qualified,
              count(*) FILTER (WHERE status = 'converted')::int AS converted,
              count(*) FILTER (WHERE status = 'lost')::int AS lost
         FROM leads WHERE ${IN_RANGE} AND ($3::text IS NULL OR product = $3)`,
      [range.from, range.to, product ?? null], { read: 'primary' })
    const total = c?.total ?? 0
    const rate = (n: number): number => (total === 0 ? 0 : Math.round((n / total) * 10000) / 10000)
    const stages = [['new', total], ['contacted', c?.contacted ?? 0], ['qualified', c?.qualified ?? 0], ['converted', c?.converted ?? 0]] as const
    return { ...range, product: product ?? null, total, lost: c?.lost ?? 0, stages: stages.map(([stage, count]) => ({ stage, count, rate: rate(count) })) }
  }

  /** Per agent: leads assigned in the range, how many of them converted, and the agent's current load. */
  async agentPerformance (range: DateRange): Promise<{ from: string, to: string, agents: Array<{ id: string, name: string, capacity: number, activeLeads: number, assigned: number, converted: number, conversionRate: number }> }> {
    const { rows } = await this.#db.query<{ id: string, name: string, capacity: number, activeLeads: number, assigned: number, converted: number }>(
      `SELECT a.id, a.name, a.capacity,
              (SELECT count(*) FROM lead_assignments x WHERE x.agent_id = a.id AND x.status = 'active')::int AS "activeLeads",
              count(la.id)::int AS assigned,
              count(la.id) FILTER (WHERE l.status = 'converted')::int AS converted
         FROM agents a
         LEFT JOIN lead_assignments la ON la.agent_id = a.id
              AND la.assigned_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND la.assigned_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
         LEFT JOIN leads l ON l.id = la.lead_id
        GROUP BY a.id ORDER BY converted DESC, assigned DESC, a.name`,
      [range.from, range.to], { read: 'primary' })
    return { ...range, agents: rows.map((r) => ({ ...r, conversionRate: r.assigned === 0 ? 0 : Math.round((r.converted / r.assigned) * 10000) / 10000 })) }
  }
}
