import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createTestSchema } from '../../test/helpers/database.js'
import { seed } from './seed.js'
import { PRODUCTS, STATUSES, US_STATES } from './lead-schemas.js'

test('seed inserts valid, distinct leads with skewed products and states, and agents once', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const first = await seed({ databaseUrl: db.url, schema: db.schema, count: 3000, agents: 10 })
  assert.equal(first.leads, 3000)
  assert.equal(first.agents, 10)
  const second = await seed({ databaseUrl: db.url, schema: db.schema, count: 500 })
  assert.equal(second.agents, 0, 'agents are only seeded into an empty table')
  const [counts] = await db.sql<{ n: number, emails: number }>('SELECT count(*)::int AS n, count(DISTINCT (lower(email), product))::int AS emails FROM leads')
  assert.equal(counts?.n, 3500)
  assert.equal(counts?.emails, 3500)
  const products = await db.sql<{ product: string, n: number }>('SELECT product, count(*)::int AS n FROM leads GROUP BY product ORDER BY n DESC')
  assert.equal(products[0]?.product, 'auto', 'auto insurance dominates')
  for (const p of products) assert.ok((PRODUCTS as readonly string[]).includes(p.product))
  const bad = await db.sql(`SELECT id FROM leads WHERE NOT (state = ANY($1)) OR NOT (status = ANY($2)) OR created_at > now() OR updated_at < created_at`, [US_STATES, STATUSES])
  assert.equal(bad.length, 0)
  const [agents] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM agents WHERE cardinality(states) >= 3 AND cardinality(products) >= 1')
  assert.equal(agents?.n, 10)
})
