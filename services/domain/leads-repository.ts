import { DatabaseError, type ConnectionPool, type TransactionClient } from '@lead-chassis/plugins/db-pool'
import { decodeCursor, encodeCursor } from './cursor.js'
import { LeadErrors } from './errors.js'
import type { Lead, LeadActivity, LeadInput, LeadListQuery, LeadPatch } from './lead-schemas.js'

export const LEAD_COLUMNS = `id, first_name AS "firstName", last_name AS "lastName", email, phone, product, state, status, score, source,
  created_at AS "createdAt", updated_at AS "updatedAt"`

// Cursor values are the exact database text, so microsecond timestamps page without gaps or repeats.
const SORT_SQL = {
  createdAt: { column: 'created_at', cursor: `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`, cast: 'timestamptz' },
  score: { column: 'score', cursor: 'score', cast: 'integer' }
} as const

// Type aliases, not interfaces: the routes' answers are typed from their schemas, whose objects are open (an index
// signature), and only an alias is assignable to those.
export type LeadPage = { data: Lead[], nextCursor: string | null }

export type ActivityPage = { data: LeadActivity[], nextCursor: string | null }

function duplicate (error: unknown): never {
  if (error instanceof DatabaseError && error.code === 'DB_UNIQUE_VIOLATION' && error.constraint === 'leads_email_product_key') {
    throw new LeadErrors.LEAD_DUPLICATE()
  }
  throw error
}

/** Leads and their activities. Every change writes its activity in the same transaction. */
export class LeadsRepository {
  readonly #db: ConnectionPool

  constructor (db: ConnectionPool) {
    this.#db = db
  }

  async list (q: LeadListQuery): Promise<LeadPage> {
    const desc = q.sort.startsWith('-')
    const sort = SORT_SQL[(desc ? q.sort.slice(1) : q.sort) as keyof typeof SORT_SQL]
    const where: string[] = []
    const params: unknown[] = []
    const add = (sql: string, value: unknown): void => {
      params.push(value)
      where.push(sql.replace('?', `$${params.length}`))
    }
    if (q.status) add('status = ?', q.status)
    if (q.product) add('product = ?', q.product)
    if (q.state) add('state = ?', q.state)
    if (q.minScore !== undefined) add('score >= ?', q.minScore)
    if (q.cursor) {
      const c = decodeCursor(q.cursor, q.sort)
      params.push(c.value, c.id)
      where.push(`(${sort.column}, id) ${desc ? '<' : '>'} ($${params.length - 1}::${sort.cast}, $${params.length}::uuid)`)
    }
    params.push(q.limit + 1)
    const dir = desc ? 'DESC' : 'ASC'
    const { rows } = await this.#db.query<Lead & { cursorValue: string | number }>(
      `SELECT ${LEAD_COLUMNS}, ${sort.cursor} AS "cursorValue" FROM leads
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY ${sort.column} ${dir}, id ${dir} LIMIT $${params.length}`, params, { read: true })
    const more = rows.length > q.limit
    const page = more ? rows.slice(0, q.limit) : rows
    const last = page.at(-1)
    return {
      data: page.map(({ cursorValue: _c, ...lead }) => lead),
      nextCursor: more && last ? encodeCursor({ sort: q.sort, value: last.cursorValue, id: last.id }) : null
    }
  }

  /** The routing queue: new leads with no active assignment, oldest first. */
  async unassigned (q: { limit: number, product?: string, state?: string }): Promise<Lead[]> {
    const { rows } = await this.#db.query<Lead>(
      `SELECT ${LEAD_COLUMNS} FROM leads l
        WHERE status = 'new' AND ($2::text IS NULL OR product = $2) AND ($3::text IS NULL OR state = $3)
          AND NOT EXISTS (SELECT 1 FROM lead_assignments a WHERE a.lead_id = l.id AND a.status = 'active')
        ORDER BY created_at, id LIMIT $1`, [q.limit, q.product ?? null, q.state ?? null], { read: 'primary' })
    return rows
  }

  async get (id: string): Promise<Lead | undefined> {
    const { rows } = await this.#db.query<Lead>(`SELECT ${LEAD_COLUMNS} FROM leads WHERE id = $1`, [id], { read: true })
    return rows[0]
  }

  async create (input: LeadInput, actor: string | null = null): Promise<Lead> {
    return this.#db.transaction(async (tx) => {
      const { rows } = await tx.query<Lead>(
        `INSERT INTO leads (first_name, last_name, email, phone, product, state, source, score)
         VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, 'web'), COALESCE($8, 0)) RETURNING ${LEAD_COLUMNS}`,
        [input.firstName, input.lastName, input.email, input.phone ?? null, input.product, input.state, input.source ?? null, input.score ?? null]
      ).catch(duplicate)
      const lead = rows[0] as Lead
      await this.#activity(tx, lead.id, 'created', { product: lead.product, state: lead.state, source: lead.source }, actor)
      return lead
    })
  }

  /**
   * Applies a patch; undefined when the lead does not exist. Returns the lead before and after, so callers can
   * invalidate what both versions appear in. The activity names the changed fields, not their values.
   */
  async update (id: string, patch: LeadPatch, actor: string | null = null): Promise<{ before: Lead, after: Lead } | undefined> {
    // One call of lead_patch (its migration): it locks the row, names the fields whose value differs (in the patch's
    // order), writes the row and its activity only when one does, and returns the lead before and after. A PATCH was
    // five round trips, then one statement PostgreSQL planned afresh each time; the function's plans are kept.
    const fields = (Object.keys(patch) as Array<keyof LeadPatch>).filter((k) => patch[k] !== undefined)
    const values = fields.map((k) => {
      const value = patch[k]
      return value === null || value === undefined ? null : String(value)
    })
    const { rows } = await this.#db.query<Lead & { isAfter: boolean }>(
      'SELECT * FROM lead_patch($1, $2, $3::text[], $4::text[])', [id, actor, fields, values]
    ).catch(duplicate)
    const strip = (row: Lead & { isAfter: boolean }): Lead => {
      const { isAfter: _, ...lead } = row
      return lead
    }
    const beforeRow = rows.find((r) => !r.isAfter)
    if (!beforeRow) return undefined
    const before = strip(beforeRow)
    const afterRow = rows.find((r) => r.isAfter)
    return { before, after: afterRow ? strip(afterRow) : before }
  }

  async activities (leadId: string, page: { limit: number, cursor?: string }): Promise<ActivityPage | undefined> {
    const params: unknown[] = [leadId]
    let after = ''
    if (page.cursor) {
      const c = decodeCursor(page.cursor, 'activities')
      params.push(c.id)
      after = `AND id < $${params.length}::bigint`
    }
    params.push(page.limit + 1)
    const { rows } = await this.#db.query<LeadActivity & { exists: boolean }>(
      `SELECT l.id AS "leadId", a.id::text AS id, a.type, a.details, a.actor, a.created_at AS "createdAt"
       FROM leads l LEFT JOIN LATERAL (
         SELECT * FROM lead_activities WHERE lead_id = l.id ${after} ORDER BY id DESC LIMIT $${params.length}
       ) a ON true WHERE l.id = $1`, params, { read: 'primary' })
    if (rows.length === 0) return undefined
    const found = rows.filter((r) => r.id !== null)
    const more = found.length > page.limit
    const data = more ? found.slice(0, page.limit) : found
    const last = data.at(-1)
    return { data, nextCursor: more && last ? encodeCursor({ sort: 'activities', value: 0, id: last.id }) : null }
  }

  async #activity (tx: TransactionClient, leadId: string, type: string, details: Record<string, unknown>, actor: string | null): Promise<void> {
    await tx.query('INSERT INTO lead_activities (lead_id, type, details, actor) VALUES ($1, $2, $3, $4)', [leadId, type, details, actor])
  }
}
