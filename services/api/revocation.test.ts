import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../domain/migrate.js'
import { createTestSchema, testApiConfig, testEnv, uniqueName, type TestSchema } from '../../test/helpers/database.js'
import { loadApiConfig } from './config.js'
import { startPrivatePostgres } from '../../test/helpers/private-postgres.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { eventually } from '../../test/helpers/eventually.js'
import { revokeWithCli } from '../../test/helpers/keys-cli.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
type After = { after: (fn: () => Promise<void>) => void }

async function schema (t: After): Promise<TestSchema> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  return db
}

async function api (t: After, db: TestSchema, env: Record<string, string>): Promise<FastifyInstance> {
  const app = await buildApp(testApiConfig(db, env))
  t.after(() => app.close())
  return app
}

async function status (app: FastifyInstance, key: string): Promise<number> {
  return (await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })).statusCode
}

/**
 * Two instances with the key's verdict cached on both; the CLI (without REDIS_URL) revokes it while both are
 * asked all along. Both must refuse within a second of the CLI saying "revoked", and keep refusing.
 */
async function revokeThroughCliAndWatch (t: { diagnostic: (m: string) => void }, a: FastifyInstance, b: FastifyInstance, db: TestSchema): Promise<void> {
  const { id, key } = await a.apiKeys.mint('partner', ['leads:read'])
  for (const app of [a, b]) {
    assert.equal(await status(app, key), 200)
    assert.equal(await status(app, key), 200, 'answered from the cached verdict')
  }
  const refused = [a, b].map((app) => eventually(async () => (await status(app, key)) === 401, 'the revoked key refused', 15000))
  const printedAt = await revokeWithCli(db, id)
  const refusedAt = await Promise.all(refused)
  t.diagnostic(`refused ${refusedAt.map((at) => Math.round(at - printedAt)).join(' and ')} ms after the CLI said "revoked"`)
  for (const at of refusedAt) assert.ok(at - printedAt < 1000, `refused ${Math.round(at - printedAt)} ms after the CLI said "revoked"`)
  for (const app of [a, b]) assert.equal(await status(app, key), 401, 'and it stays refused')
}

test('a key revoked by the keys CLI without REDIS_URL is refused within a second by every api instance on Redis', async (t) => {
  const db = await schema(t)
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('revoke')}:`, API_KEY_CACHE_TTL: '300' }
  await revokeThroughCliAndWatch(t, await api(t, db, env), await api(t, db, env), db)
})

test('a key revoked by the keys CLI is refused within a second by every api instance without Redis', async (t) => {
  const db = await schema(t)
  const env = { CACHE_PREFIX: `${uniqueName('revoke')}:`, API_KEY_CACHE_TTL: '300' }
  await revokeThroughCliAndWatch(t, await api(t, db, env), await api(t, db, env), db)
})

test('a key revoked by hand in SQL (UPDATE or DELETE) is refused within a second, and its scope change is seen at once', async (t) => {
  const db = await schema(t)
  const app = await api(t, db, { CACHE_PREFIX: `${uniqueName('revoke')}:`, API_KEY_CACHE_TTL: '300' })
  const updated = await app.apiKeys.mint('by-update', ['leads:read'])
  const deleted = await app.apiKeys.mint('by-delete', ['leads:read'])
  const narrowed = await app.apiKeys.mint('narrowed', ['leads:read'])
  for (const k of [updated, deleted, narrowed]) assert.equal(await status(app, k.key), 200)
  await db.sql('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [updated.id])
  await db.sql('DELETE FROM api_keys WHERE id = $1', [deleted.id])
  await db.sql("UPDATE api_keys SET scopes = '{leads:write}' WHERE id = $1", [narrowed.id])
  const changedAt = performance.now()
  const at = await Promise.all([
    eventually(async () => (await status(app, updated.key)) === 401, 'revoked by UPDATE', 15000),
    eventually(async () => (await status(app, deleted.key)) === 401, 'deleted', 15000),
    eventually(async () => (await status(app, narrowed.key)) === 403, 'scope removed', 15000)
  ])
  for (const when of at) assert.ok(when - changedAt < 1000, `${Math.round(when - changedAt)} ms`)
})

test('a revocation made while the notification link is down is honoured at once, and still after the link reconnects', async (t) => {
  const db = await schema(t)
  // The link stays down 3 s after a drop, long enough to revoke in the gap.
  const pool = createConnectionPool({ connectionString: db.url, schema: db.schema, min: 1, max: 5, healthCheckInterval: 0, listener: { reconnectDelayMs: 3000 } })
  await pool.start()
  t.after(() => pool.close())
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('revoke')}:`, API_KEY_CACHE_TTL: '300' }), { pool })
  t.after(() => app.close())
  const revoked = await app.apiKeys.mint('revoked-unheard', ['leads:read'])
  const kept = await app.apiKeys.mint('kept', ['leads:read'])
  for (const k of [revoked, kept]) assert.equal(await status(app, k.key), 200)
  const pid = pool.notifications.processId
  assert.ok(pid, 'listening')
  await db.sql('SELECT pg_terminate_backend($1)', [pid])
  await eventually(() => !pool.notifications.up, 'the link is seen down', 5000)
  await db.sql('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [revoked.id])
  assert.equal(pool.notifications.up, false, 'revoked while nobody listened')
  assert.equal(await status(app, revoked.key), 401, 'while the link is down every verification reads PostgreSQL')
  assert.equal(await status(app, kept.key), 200)
  await eventually(() => pool.notifications.up, 'the link reconnects', 15000)
  assert.notEqual(pool.notifications.processId, pid)
  assert.equal(await status(app, revoked.key), 401, 'after the reconnect no verdict cached before the drop survives')
  assert.equal(await status(app, kept.key), 200)
  // And the new link carries revocations again.
  await db.sql('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [kept.id])
  const revokedAt = performance.now()
  const refusedAt = await eventually(async () => (await status(app, kept.key)) === 401, 'revocation over the new link', 15000)
  assert.ok(refusedAt - revokedAt < 1000, `${Math.round(refusedAt - revokedAt)} ms`)
})

test('a revocation heard while Redis hangs is honoured by this instance at once, not once Redis takes the eviction', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => { redis.resume(); return redis.destroy() })
  const db = await schema(t)
  // A long command budget: before, the instance's own copy of the verdict went only once Redis answered or the
  // budget ran out, and the key was let in meanwhile.
  const app = await api(t, db, { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '3000', CACHE_PREFIX: `${uniqueName('revoke')}:`, API_KEY_CACHE_TTL: '300' })
  const { id, key } = await app.apiKeys.mint('revoked-while-redis-hangs', ['leads:read'])
  assert.equal(await status(app, key), 200)
  assert.equal(await status(app, key), 200, 'answered from the cached verdict')
  redis.pause()
  await db.sql('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [id])
  const revokedAt = performance.now()
  const refusedAt = await eventually(async () => (await status(app, key)) === 401, 'the revoked key refused', 15000)
  assert.ok(refusedAt - revokedAt < 1000, `refused ${Math.round(refusedAt - revokedAt)} ms after the revocation, with Redis hung`)
})

test('with PostgreSQL down, a key is not let in on a verdict cached before the outage: 503, then 200 once it is back', async (t) => {
  const server = await startPrivatePostgres()
  t.after(() => server.destroy())
  await migrate({ databaseUrl: server.url })
  const db = { schema: 'public', url: server.url } as TestSchema
  const app = await buildApp(loadApiConfig({ dotenv: false, env: testEnv(db, { API_KEY_CACHE_TTL: '300', DB_CONNECTION_TIMEOUT: '1000' }) }))
  t.after(() => app.close())
  const { key } = await app.apiKeys.mint('outage', ['leads:read'])
  assert.equal(await status(app, key), 200)
  assert.equal(await status(app, key), 200, 'the list and the verdict are cached now')
  server.stop('fast')
  await eventually(() => !app.db.notifications.up, 'the notification link is seen down', 10000)
  const refused = await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })
  assert.equal(refused.statusCode, 503, 'nobody can vouch for the key: the cached list is not served on a cached verdict')
  assert.equal(refused.json().code, 'DB_UNAVAILABLE')
  server.start()
  await eventually(async () => (await status(app, key)) === 200, 'the key works again once PostgreSQL is back', 30000)
})
