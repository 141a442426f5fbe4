// The api_keys schema the package ships (for services without migrations of their own) against the services' migrations.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createConnectionPool, type ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { ApiKeyStore, createApiKeysSchema, followKeyChanges, type KeyChange } from '@lead-chassis/plugins/api-keys'
import { createTestSchema, TEST_DATABASE_URL, uniqueName } from '../helpers/database.js'

type After = { after: (fn: () => Promise<void>) => void }
const quietLog = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} }

/** A pool on a new, empty schema, dropped after the test. */
async function emptySchema (t: After): Promise<{ db: ConnectionPool, schema: string }> {
  const schema = uniqueName('keys')
  const admin = createConnectionPool({ connectionString: TEST_DATABASE_URL, min: 0, max: 1 })
  await admin.query(`CREATE SCHEMA ${schema}`)
  const db = createConnectionPool({ connectionString: TEST_DATABASE_URL, schema, min: 0, max: 4 })
  t.after(async () => {
    await db.close()
    await admin.query(`DROP SCHEMA ${schema} CASCADE`)
    await admin.close()
  })
  return { db, schema }
}

/** What a client of the table relies on: columns, checks, the triggers and what their function does. */
async function catalog (db: ConnectionPool, schema: string): Promise<unknown> {
  const columns = await db.query(`SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
    WHERE table_schema = $1 AND table_name = 'api_keys' ORDER BY column_name`, [schema])
  const constraints = await db.query(`SELECT contype, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
    JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
    WHERE n.nspname = $1 AND r.relname = 'api_keys' ORDER BY 2`, [schema])
  const triggers = await db.query(`SELECT t.tgname, replace(pg_get_triggerdef(t.oid), $1 || '.', '') AS def FROM pg_trigger t
    JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
    WHERE n.nspname = $1 AND r.relname = 'api_keys' AND NOT t.tgisinternal ORDER BY 1`, [schema])
  const fn = await db.query(`SELECT regexp_replace(p.prosrc, '\\s+', ' ', 'g') AS src FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = 'api_key_changed_notify'`, [schema])
  return { columns: columns.rows, constraints: constraints.rows, triggers: triggers.rows, fn: fn.rows }
}

test('the api_keys schema the package ships is the one the services migrate to: columns, checks, triggers and their function', async (t) => {
  const migrated = await createTestSchema()
  t.after(() => migrated.drop())
  const { db, schema } = await emptySchema(t)
  await createApiKeysSchema(db)
  const shipped = await catalog(db, schema)
  assert.deepEqual(shipped, await catalog(db, migrated.schema))
  assert.equal((shipped as { triggers: unknown[] }).triggers.length, 2, 'the change trigger and the truncate trigger')
})

test('creating the api_keys schema again, or from several instances at once, keeps the keys and fails none of them', async (t) => {
  const { db } = await emptySchema(t)
  await createApiKeysSchema(db)
  const { id } = await new ApiKeyStore(db).mint('partner', ['leads:read'])
  await Promise.all([createApiKeysSchema(db), createApiKeysSchema(db), createApiKeysSchema(db), createApiKeysSchema(db)])
  const { rows } = await db.query<{ id: string }>('SELECT id FROM api_keys')
  assert.deepEqual(rows.map((r) => r.id), [id])
})

test('without migrations of its own, a service on the shipped api_keys schema drops a verdict it cached as soon as the key is revoked by hand in SQL', async (t) => {
  const { db } = await emptySchema(t)
  await createApiKeysSchema(db)
  const store = new ApiKeyStore(db, undefined, 300)
  const { id, key } = await store.mint('partner', ['leads:read'])
  const changes: KeyChange[] = []
  store.onKeyChange((change) => changes.push(change))
  const stop = await followKeyChanges(store, db, quietLog)
  t.after(stop)
  assert.ok(await store.verify(key), 'the key is let in')
  assert.ok(await store.verify(key), 'and its verdict is cached for five minutes')

  const revokedAt = performance.now()
  await db.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [id])
  while (changes.length === 0 && performance.now() - revokedAt < 5000) await new Promise((resolve) => setTimeout(resolve, 10))
  assert.deepEqual(changes, [{ id, revoked: true }], 'the table announced the revocation')
  assert.ok(performance.now() - revokedAt < 1000, `announced ${Math.round(performance.now() - revokedAt)} ms after the UPDATE`)
  assert.equal(await store.verify(key), undefined, 'the key is refused, not let in on its cached verdict')
})
