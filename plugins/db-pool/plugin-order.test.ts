import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import { HealthRegistry } from '../chassis/index.js'
import { TEST_DATABASE_URL } from '../../test/helpers/database.js'
import { dbPoolPlugin } from './index.js'

const addHealth = (app: FastifyInstance) => app.decorate('health', new HealthRegistry(1000))
const pool = { connectionString: TEST_DATABASE_URL, name: 'order', min: 1 }

test('the pool registered before the health plugin fails ready, naming what to register first', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(dbPoolPlugin, pool)
  addHealth(app)
  await assert.rejects(async () => { await app.ready() }, {
    code: 'CHASSIS_PLUGIN_ORDER',
    message: 'db-pool was registered before health: register the chassis health plugin (buildService does) first, or pass health: false'
  })
})

test('the pool registered after the health plugin adds its readiness check; health: false does not', async (t) => {
  for (const health of [undefined, false] as const) {
    const app = Fastify()
    t.after(() => app.close())
    addHealth(app)
    await app.register(dbPoolPlugin, { ...pool, ...(health === false ? { health } : {}) })
    await app.ready()
    const { checks } = await app.health.report()
    assert.equal('postgres:order' in checks, health === undefined)
  }
})

test('a pool given with options it would ignore (max, a query timeout) is refused at registration, naming them', async (t) => {
  const { createConnectionPool } = await import('./index.js')
  const injected = createConnectionPool({ connectionString: TEST_DATABASE_URL, min: 0, max: 1, healthCheckInterval: 0 })
  t.after(() => injected.close())
  const app = Fastify()
  t.after(() => app.close())
  await assert.rejects(async () => { await app.register(dbPoolPlugin, { pool: injected, max: 50, queryTimeoutMillis: 5, health: false }) }, {
    code: 'DB_POOL_INVALID_OPTIONS',
    message: 'Invalid connection pool options: max, queryTimeoutMillis cannot be given with pool, which keeps the options it was made with'
  })
})
