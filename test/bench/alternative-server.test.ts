import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { ALTERNATIVE_CACHE, createBentoCache } from '../../scripts/bench/bentocache.js'
import { startService, statusCounts } from '../../scripts/bench/lib.js'
import { buildWorkload, replay } from '../../scripts/bench/workload.js'
import { seed } from '../../services/domain/seed.js'
import { createTestSchema, uniqueName } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'

// The baseline `npm run bench` compares "after" with must answer what it is asked. With bentocache's L1 in its
// fastest mode (objects, serialize: false), an entry read back from Redis after the L1 evicted it crashed every
// later read of it inside bentocache: the alternative answered thousands of 500s a run, and its req/s counted them.
test('the bench alternative\'s bentocache reads an entry its L1 evicted back from Redis, and reads it again, instead of crashing with "reading \'deserialize\'"', async (t) => {
  const { bento, close } = createBentoCache({ redisUrl: 'redis://127.0.0.1:6379', prefix: uniqueName('alt'), ...ALTERNATIVE_CACHE, l1MaxItems: 2 })
  t.after(close)
  const load = (key: string) => async (): Promise<{ body: string, etag: string }> => ({ body: `{"key":"${key}"}`, etag: `"${key}"` })
  for (const key of ['a', 'b', 'c']) await bento.getOrSet({ key, factory: load(key) })
  // 'a' was evicted from the L1: the first read refills it from Redis, the next ones read the L1.
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(await bento.getOrSet({ key: 'a', factory: async () => { throw new Error('Redis held it: no load') } }), { body: '{"key":"a"}', etag: '"a"' })
  }
})

test('the bench alternative answers the bench mix of reads and PATCHes, under its keys\' limit, with 2xx only', async (t) => {
  const schema = await createTestSchema()
  t.after(() => schema.drop())
  await seed({ databaseUrl: schema.url, schema: schema.schema, count: 3000 })
  const pool = createConnectionPool({ connectionString: schema.url, schema: schema.schema, min: 0, max: 2, healthCheckInterval: 0 })
  const store = new ApiKeyStore(pool)
  const keys = await Promise.all(Array.from({ length: 100 }, async () => (await store.mint('bench', ['leads:read', 'leads:write'])).key))
  const { rows } = await pool.query<{ id: string }>('SELECT id FROM leads ORDER BY md5(id::text) LIMIT 2000')
  await pool.close()
  const alternative = await startService('dist/scripts/bench/alternative-server.js', { DATABASE_URL: schema.url, DB_SCHEMA: schema.schema, REDIS_URL: 'redis://127.0.0.1:6379' }, await freePort())
  t.after(() => alternative.stop())
  const sequence = buildWorkload({ ids: rows.map((r) => r.id), size: 20000, writes: 0.05 })
  const result = await replay(alternative.url, { seconds: 4, connections: 50, sequence, offset: 0, callers: keys, onResponse: () => {} }).done
  assert.ok(result.requests.total > 1000, `a load, not a handful of requests (${result.requests.total})`)
  assert.equal(statusCounts(result, true), '', `every answer 2xx: ${statusCounts(result)}`)
  assert.equal(result.errors + result.timeouts, 0)
})
