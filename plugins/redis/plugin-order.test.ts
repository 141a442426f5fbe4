import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import { HealthRegistry } from '../chassis/index.js'
import { redisPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const addHealth = (app: FastifyInstance) => app.decorate('health', new HealthRegistry(1000))

test('redis registered before the health plugin fails ready, naming what to register first', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(redisPlugin, { url: REDIS_URL })
  addHealth(app)
  await assert.rejects(async () => { await app.ready() }, {
    code: 'CHASSIS_PLUGIN_ORDER',
    message: 'redis was registered before health: register the chassis health plugin (buildService does) first, or pass health: false'
  })
})

test('redis registered after the health plugin adds its readiness check; health: false does not', async (t) => {
  for (const health of [undefined, false] as const) {
    const app = Fastify()
    t.after(() => app.close())
    addHealth(app)
    await app.register(redisPlugin, { url: REDIS_URL, ...(health === false ? { health } : {}) })
    await app.ready()
    const { checks } = await app.health.report()
    assert.equal('redis' in checks, health === undefined)
  }
})
