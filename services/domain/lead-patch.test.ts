import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DatabaseError, createConnectionPool, type ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { createTestSchema } from '../../test/helpers/database.js'
import { LeadsRepository } from './leads-repository.js'
import type { LeadPatch } from './lead-schemas.js'
import { seed } from './seed.js'

interface PlanNode { 'Node Type': string, Plans?: PlanNode[] }

test('a PATCH asks PostgreSQL to plan one function call, whose statements it keeps planned, not a five-part statement every time', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  await seed({ databaseUrl: db.url, schema: db.schema, count: 50 })
  const [lead] = await db.sql<{ id: string }>('SELECT id FROM leads LIMIT 1')
  // The repository's own statement, explained on the seeded schema (EXPLAIN without ANALYZE plans it, runs nothing).
  const plans: PlanNode[] = []
  const explained = {
    query: async (text: string, params: unknown[]) => {
      const [row] = await db.sql<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${text}`, params)
      if (row) plans.push(row['QUERY PLAN'][0]?.Plan as PlanNode)
      return { rows: [] }
    }
  }
  await new LeadsRepository(explained as unknown as ConnectionPool).update(lead?.id ?? '', { status: 'lost', score: 7 }, 'key:test')
  assert.equal(plans.length, 1)
  assert.equal(plans[0]?.['Node Type'], 'Function Scan')
  assert.equal(plans[0]?.Plans, undefined, 'nothing else to plan')
})

test('a PATCH with a field the database function does not know is refused, not silently dropped', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  await seed({ databaseUrl: db.url, schema: db.schema, count: 5 })
  const pool = createConnectionPool({ connectionString: db.url, schema: db.schema, min: 0, max: 1, healthCheckInterval: 0 })
  t.after(() => pool.close())
  const [lead] = await db.sql<{ id: string, status: string }>('SELECT id, status FROM leads LIMIT 1')
  const leads = new LeadsRepository(pool)
  // A server error (500), not the caller's: the route's schema refuses such a field before it gets here.
  await assert.rejects(leads.update(lead?.id ?? '', { nickname: 'x' } as unknown as LeadPatch), (error) => error instanceof DatabaseError && error.code === 'DB_ERROR')
  const [after] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM lead_activities WHERE lead_id = $1', [lead?.id])
  assert.equal(after?.n, 0, 'nothing was written')
})

test('a state longer than two letters is refused (400), not cut to its first two and taken as unchanged or written', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  await seed({ databaseUrl: db.url, schema: db.schema, count: 5 })
  const pool = createConnectionPool({ connectionString: db.url, schema: db.schema, min: 0, max: 1, healthCheckInterval: 0 })
  t.after(() => pool.close())
  const [lead] = await db.sql<{ id: string, state: string }>('SELECT id, state FROM leads LIMIT 1')
  const leads = new LeadsRepository(pool)
  const state = lead?.state ?? ''
  for (const longer of [`${state}X`, state === 'TX' ? 'CAX' : 'TXX']) {
    await assert.rejects(leads.update(lead?.id ?? '', { state: longer } as LeadPatch),
      (error) => error instanceof DatabaseError && error.code === 'DB_INVALID_INPUT' && error.statusCode === 400, longer)
  }
  const [after] = await db.sql<{ state: string, n: number }>('SELECT state, (SELECT count(*)::int FROM lead_activities WHERE lead_id = $1) AS n FROM leads WHERE id = $1', [lead?.id])
  assert.deepEqual(after, { state, n: 0 })
})
