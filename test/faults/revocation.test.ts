import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'
import type { PrivateRedis } from '../helpers/private-redis.js'
import { schemaAndPrivateRedis } from '../helpers/private-stores.js'
import { eventually } from '../helpers/eventually.js'
import { revokeWithCli } from '../helpers/keys-cli.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'

type After = { after: (fn: () => Promise<void>) => void }

async function status (app: FastifyInstance, key: string): Promise<number> {
  return (await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })).statusCode
}

/** A schema and a Redis of the test's own (the test hangs it with SIGSTOP), and api instances on both. */
async function fleet (t: After): Promise<{ db: TestSchema, redis: PrivateRedis, env: Record<string, string>, api: () => Promise<FastifyInstance> }> {
  const { db, redis } = await schemaAndPrivateRedis(t)
  const env = {
    REDIS_URL: redis.url,
    CACHE_PREFIX: `${uniqueName('revoke')}:`,
    CACHE_ENABLED: 'true',
    REDIS_COMMAND_TIMEOUT_MS: '100',
    CACHE_ACK_TIMEOUT_MS: '200',
    CACHE_BREAKER_COOLDOWN_MS: '500',
    // Longer than the minute an instance remembers a revocation it heard: only the cache's own state keeps it out after.
    API_KEY_CACHE_TTL: '300'
  }
  const api = async (): Promise<FastifyInstance> => {
    const app = await buildApp(testApiConfig(db, env))
    t.after(() => app.close())
    return app
  }
  return { db, redis, env, api }
}

test('a key revoked by the keys CLI while Redis is hung is refused within a second by both api instances, and after Redis is back', async (t) => {
  const { db, redis, env, api } = await fleet(t)
  const [a, b] = [await api(), await api()]
  const { id, key } = await a.apiKeys.mint('partner', ['leads:read'])
  for (const app of [a, b]) {
    assert.equal(await status(app, key), 200)
    assert.equal(await status(app, key), 200, 'answered from the cached verdict')
  }

  redis.pause()
  const refused = Promise.all([a, b].map((app) => eventually(async () => (await status(app, key)) === 401, 'the revoked key refused', 15000)))
  refused.catch(() => {})
  // The operator's CLI is pointed at the same (hung) Redis: it must still revoke and return.
  const started = performance.now()
  const printedAt = await revokeWithCli(db, id, { REDIS_URL: redis.url, CACHE_PREFIX: env.CACHE_PREFIX ?? '' }, 15_000)
  const refusedAt = await refused
  t.diagnostic(`the CLI printed "revoked" after ${Math.round(printedAt - started)} ms; refused ${refusedAt.map((at) => Math.round(at - printedAt)).join(' and ')} ms after`)
  for (const at of refusedAt) assert.ok(at - printedAt < 1000, `refused ${Math.round(at - printedAt)} ms after the CLI said "revoked"`)

  redis.resume()
  await eventually(() => [a, b].every((app) => app.cache.getStats().invalidations.pending === 0 && app.cache.getStats().redis.breaker === 'closed'),
    'both instances have handed their pending invalidations to Redis', 15000)
  for (const app of [a, b]) assert.equal(await status(app, key), 401, 'still refused once Redis is back')
  // An instance that starts now warms its local tier from Redis: Redis must not hold the old verdict any more.
  const c = await api()
  assert.equal(await status(c, key), 401, 'refused by an instance started after Redis came back')
})

test('the keys CLI with Redis hung revokes in PostgreSQL within a second of reaching Redis, not waiting 2 s for the cache to be ready', async (t) => {
  const { db, redis, env, api } = await fleet(t)
  const app = await api()
  const { id } = await app.apiKeys.mint('partner', ['leads:read'])
  // A proxy in front of the hung Redis tells when the CLI reaches it: what the CLI takes from there on is measured,
  // not how long a busy machine takes to start a process.
  const proxy = await startFaultProxy({ port: Number(new URL(redis.url).port) })
  t.after(() => proxy.close())
  redis.pause()
  let reachedAt: number | undefined
  const watch = setInterval(() => { if (proxy.connections() > 0) reachedAt ??= performance.now() }, 5)
  t.after(() => clearInterval(watch))
  let exitedAt = 0
  const printedAt = await revokeWithCli(db, id, { REDIS_URL: proxy.rewrite(redis.url), CACHE_PREFIX: env.CACHE_PREFIX ?? '' }, 15_000).finally(() => { exitedAt = performance.now() })
  clearInterval(watch)
  assert.ok(reachedAt !== undefined, 'the CLI connected to Redis')
  t.diagnostic(`the CLI printed "revoked" ${Math.round(printedAt - reachedAt)} ms after it reached the hung Redis, and exited ${Math.round(exitedAt - printedAt)} ms later`)
  const [row] = await db.sql<{ revoked: boolean }>('SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = $1', [id])
  assert.equal(row?.revoked, true, 'revoked in PostgreSQL')
  assert.ok(printedAt - reachedAt < 1000, `"revoked" came ${Math.round(printedAt - reachedAt)} ms after the CLI reached Redis`)
  assert.ok(exitedAt - printedAt < 1000, `the CLI lingered ${Math.round(exitedAt - printedAt)} ms after it said "revoked"`)
})
