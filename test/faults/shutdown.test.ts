import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { testApiConfig, testEnv } from '../helpers/database.js'
import type { PrivateRedis } from '../helpers/private-redis.js'
import { schemaAndPrivateRedis } from '../helpers/private-stores.js'
import { buildOrchestrator } from '../../services/orchestrator/app.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'

// SHUTDOWN_TIMEOUT_MS is 10 s by default and the Deployments leave 10 s after the readiness delay: closing the
// connections to a Redis that does not answer must not spend it.
const CLOSE_WITHIN_MS = 4000

async function closeTime (app: FastifyInstance, redis: PrivateRedis): Promise<number> {
  redis.pause()
  const started = performance.now()
  const closed = await Promise.race([app.close().then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 15_000).unref())])
  assert.ok(closed, 'still closing after 15 s')
  return performance.now() - started
}

test('an api closing while Redis is hung (SIGSTOP) is done within 4 s, not after the 10 s client backstop', async (t) => {
  const { db, redis } = await schemaAndPrivateRedis(t)
  const app = await buildApp(testApiConfig(db, { REDIS_URL: redis.url, CACHE_ENABLED: 'true', RATE_LIMIT_ENABLED: 'true' }))
  for (let i = 0; i < 5; i++) assert.equal((await app.inject({ url: '/health/live' })).statusCode, 200)
  const ms = await closeTime(app, redis)
  t.diagnostic(`api closed in ${ms.toFixed(0)} ms with Redis hung`)
  assert.ok(ms < CLOSE_WITHIN_MS, `closed in ${ms.toFixed(0)} ms`)
})

test('an orchestrator closing while Redis is hung (SIGSTOP) is done within 4 s, not held by its event subscriber', async (t) => {
  const { db, redis } = await schemaAndPrivateRedis(t)
  const app = await buildOrchestrator(loadOrchestratorConfig({ dotenv: false, env: testEnv(db, { REDIS_URL: redis.url, CACHE_ENABLED: 'true', DATA_SERVICE_URL: 'http://127.0.0.1:9' }) }))
  await app.ready()
  const ms = await closeTime(app, redis)
  t.diagnostic(`orchestrator closed in ${ms.toFixed(0)} ms with Redis hung`)
  assert.ok(ms < CLOSE_WITHIN_MS, `closed in ${ms.toFixed(0)} ms`)
})
