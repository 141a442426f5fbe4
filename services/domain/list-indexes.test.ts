import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { createTestSchema } from '../../test/helpers/database.js'
import { LeadsRepository } from './leads-repository.js'
import type { LeadListQuery } from './lead-schemas.js'
import { seed } from './seed.js'

interface PlanNode {
  'Relation Name'?: string
  'Actual Rows': number
  'Actual Loops': number
  'Rows Removed by Filter'?: number
  Plans?: PlanNode[]
}

/** The rows a plan took from leads: what its scans of the table kept, and what their filters dropped. */
function rowsRead (node: PlanNode): number {
  const own = node['Relation Name'] === 'leads' ? (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'] : 0
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child), 0)
}

test('a list with two of its filters, sorted by score, reads its page in index order instead of filtering the whole score order', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  await seed({ databaseUrl: db.url, schema: db.schema, count: 30000 })
  await db.sql('ANALYZE leads')
  // The repository's own statement, run under EXPLAIN ANALYZE on the seeded schema.
  let plan: PlanNode | undefined
  const explained = {
    query: async (text: string, params: unknown[]) => {
      const [row] = await db.sql<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, params)
      plan = row?.['QUERY PLAN'][0]?.Plan
      return { rows: [] }
    }
  }
  const leads = new LeadsRepository(explained as unknown as ConnectionPool)
  // The rarest product and status, and the smallest state that still fills pages: the pairs the score order serves worst.
  const rarest = async (column: string): Promise<string> => (await db.sql<{ v: string }>(
    `SELECT ${column} AS v FROM leads GROUP BY 1 HAVING count(*) >= 300 ORDER BY count(*), 1 LIMIT 1`))[0]?.v ?? ''
  const [product, status, state] = [await rarest('product'), await rarest('status'), await rarest('state')]
  const pairs = [{ product, state }, { status, state }, { status, product }, { status, product, state }] as Array<Partial<LeadListQuery>>
  for (const filters of pairs) {
    plan = undefined
    await leads.list({ ...filters, sort: '-score', limit: 20 } as LeadListQuery)
    assert.ok(plan, 'the list ran one statement')
    const read = rowsRead(plan)
    assert.ok(read <= 21, `${JSON.stringify(filters)} sorted by score read ${read} rows of leads for a page of 20 (and one to know there is more)`)
  }
})
