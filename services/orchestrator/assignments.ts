import type { ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { LEAD_COLUMNS } from '../domain/leads-repository.js'
import { LeadErrors } from '../domain/errors.js'
import type { Lead } from '../domain/lead-schemas.js'
import { OrchestratorErrors } from './errors.js'

// A type alias, not an interface: the route's answer is typed from its open schema, and only an alias fits it.
export type Assignment = {
  leadId: string
  agentId: string
  agentName: string
  score: number
  assignedAt: Date
  /** The lead as it was before this assignment changed its score. */
  lead: Lead
}

/**
 * Assigns leads to agents. The lead row is locked with SKIP LOCKED (a second call for the same lead does not wait,
 * it is told the lead is busy), and the candidate agents are locked in id order, so their loads cannot change
 * between the count and the insert: no lead is assigned twice (also a unique index) and no agent passes its
 * capacity, whatever the concurrency.
 */
export class AssignmentRepository {
  readonly #db: ConnectionPool
  constructor (db: ConnectionPool) {
    this.#db = db
  }

  async assign (leadId: string, score: number, actor: string): Promise<Assignment> {
    return this.#db.transaction(async (tx) => {
      const { rows: [lead] } = await tx.query<Lead>(`SELECT ${LEAD_COLUMNS} FROM leads WHERE id = $1 FOR UPDATE SKIP LOCKED`, [leadId])
      if (!lead) {
        const { rowCount } = await tx.query('SELECT 1 FROM leads WHERE id = $1', [leadId])
        throw rowCount ? new OrchestratorErrors.LEAD_BUSY(leadId) : new LeadErrors.LEAD_NOT_FOUND(leadId)
      }
      const { rowCount: taken } = await tx.query("SELECT 1 FROM lead_assignments WHERE lead_id = $1 AND status = 'active'", [leadId])
      if (taken) throw new OrchestratorErrors.ALREADY_ASSIGNED(leadId)
      const { rows: agents } = await tx.query<{ id: string, name: string, capacity: number }>(
        `SELECT id, name, capacity FROM agents WHERE active AND $1 = ANY(states) AND $2 = ANY(products) AND capacity > 0 ORDER BY id FOR UPDATE`,
        [lead.state, lead.product])
      const { rows: loads } = await tx.query<{ agentId: string, n: number }>(
        `SELECT agent_id AS "agentId", count(*)::int AS n FROM lead_assignments WHERE status = 'active' AND agent_id = ANY($1::uuid[]) GROUP BY agent_id`,
        [agents.map((a) => a.id)])
      const loadOf = new Map(loads.map((l) => [l.agentId, l.n]))
      // Least loaded first (by share of capacity, then by count), then by id for a stable choice.
      const agent = agents
        .map((a) => ({ ...a, load: loadOf.get(a.id) ?? 0 }))
        .filter((a) => a.load < a.capacity)
        .sort((a, b) => a.load / a.capacity - b.load / b.capacity || a.load - b.load || a.id.localeCompare(b.id))[0]
      if (!agent) throw new OrchestratorErrors.NO_AGENT_AVAILABLE(lead.product, lead.state, lead.id)
      const { rows: [assigned] } = await tx.query<{ assignedAt: Date }>(
        'INSERT INTO lead_assignments (lead_id, agent_id) VALUES ($1, $2) RETURNING assigned_at AS "assignedAt"', [leadId, agent.id])
      await tx.query('UPDATE leads SET score = $2, updated_at = now() WHERE id = $1', [leadId, score])
      await tx.query("INSERT INTO lead_activities (lead_id, type, details, actor) VALUES ($1, 'assigned', $2, $3)",
        [leadId, JSON.stringify({ agentId: agent.id, score }), actor])
      return { leadId, agentId: agent.id, agentName: agent.name, score, assignedAt: assigned?.assignedAt ?? new Date(), lead }
    })
  }
}
