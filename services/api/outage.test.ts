import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import { buildApp } from './app.js'
import { loadApiConfig } from './config.js'
import { migrate } from '../domain/migrate.js'
import { startPrivatePostgres } from '../../test/helpers/private-postgres.js'
import { SERVICE_HEADERS, TEST_SERVICE_KEY } from '../../test/helpers/database.js'

test('a PostgreSQL restart under load: no crash, 503s during the outage, full recovery after', async (t) => {
  const server = await startPrivatePostgres()
  t.after(() => server.destroy())
  await migrate({ databaseUrl: server.url })
  const config = loadApiConfig({
    dotenv: false,
    env: { SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', DATABASE_URL: server.url, DB_POOL_MIN: '2', DB_POOL_MAX: '4', DB_CONNECTION_TIMEOUT: '1000', DB_HEALTH_CHECK_INTERVAL: '200', LOG_LEVEL: 'silent' }
  })
  const app = await buildApp(config)
  t.after(() => app.close())

  const created = await app.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Ann', lastName: 'Lee', email: 'ann@example.com', product: 'auto', state: 'CA' } })
  assert.equal(created.statusCode, 201)

  type Phase = 'before' | 'outage' | 'after'
  let phase: Phase = 'before'
  const seen: Record<Phase, Map<string, number>> = { before: new Map(), outage: new Map(), after: new Map() }
  let running = true
  const worker = async (): Promise<void> => {
    while (running) {
      const res = await app.inject({ url: '/api/v1/leads?limit=5', headers: SERVICE_HEADERS })
      const key = res.statusCode === 200 ? '200' : `${res.statusCode} ${String(res.json().code)}`
      seen[phase].set(key, (seen[phase].get(key) ?? 0) + 1)
      if (res.statusCode !== 200) await sleep(5)
      else await yieldToLoop()
    }
  }
  const workers = Array.from({ length: 8 }, worker)

  await sleep(300)
  phase = 'outage'
  server.stop('fast')
  await sleep(1000)
  const ready = await app.inject('/health/ready')
  assert.equal(ready.statusCode, 503, 'readiness reports the outage')
  server.start()
  // Recovery: the first success ends the outage phase.
  for (let i = 0; i < 200; i++) {
    if ((await app.inject({ url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })).statusCode === 200) break
    await sleep(50)
  }
  phase = 'after'
  await sleep(500)
  running = false
  await Promise.all(workers)

  assert.deepEqual([...seen.before.keys()], ['200'])
  const outageCodes = [...seen.outage.keys()]
  assert.ok(outageCodes.includes('503 DB_UNAVAILABLE'), `outage answers: ${outageCodes.join(', ')}`)
  for (const code of outageCodes) assert.match(code, /^(200|503 DB_[A-Z_]+)$/, 'only 503s with a database code during the outage')
  assert.deepEqual([...seen.after.keys()], ['200'], `after recovery: ${[...seen.after.entries()].join(', ')}`)
  assert.ok((seen.after.get('200') ?? 0) > 10)
  assert.equal((await app.inject('/health/ready')).statusCode, 200)
  assert.ok(app.db.getMetrics().totalConnections >= 2, 'the pool refilled to min')
})
