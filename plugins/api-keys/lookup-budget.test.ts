import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { dbPoolPlugin } from '../db-pool/index.js'
import { closeRedisClient, createRedisClient, redisPlugin } from '../redis/index.js'
import { TEST_DATABASE_URL, createTestSchema, uniqueName } from '../../test/helpers/database.js'
import { apiKeysPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

test('a closed app leaves the lookup budget\'s presence set and keeps no heartbeat or listener on a Redis client it did not own', async (t) => {
  const client = createRedisClient({ url: REDIS_URL, name: 'lookup-budget-test' })
  t.after(() => closeRedisClient(client))
  await new Promise((resolve) => client.once('ready', resolve))
  const listeners = { ready: client.listenerCount('ready'), error: client.listenerCount('error') }
  const prefix = `${uniqueName('lookups')}:`
  const members = async (): Promise<number> => client.zcard(`${prefix}instances`)

  const app = Fastify()
  await app.register(dbPoolPlugin, { connectionString: TEST_DATABASE_URL, name: 'lookup-budget', min: 0 })
  await app.register(redisPlugin, { client })
  await app.register(apiKeysPlugin, { followChanges: false, cache: false, lookupBudget: { prefix } })
  await app.ready()
  let announced = 0
  for (let i = 0; i < 40 && announced === 0; i++) {
    announced = await members()
    if (announced === 0) await sleep(25)
  }
  assert.equal(announced, 1, 'the lookup budget announced this instance')

  await app.close()
  assert.equal(await members(), 0, 'closing the app takes the instance out of the presence set at once')
  // The client outlives the app: a reconnection, or the heartbeat's interval (1 s), must not announce it again.
  client.emit('ready')
  await sleep(1500)
  assert.equal(await members(), 0, 'no heartbeat after close')
  assert.deepEqual({ ready: client.listenerCount('ready'), error: client.listenerCount('error') }, listeners)
})

test('lookupBudget.key charges the lookups to what it returns: one tenant over its budget leaves another, from the same address, its own', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = Fastify()
  t.after(() => app.close())
  await app.register(dbPoolPlugin, { connectionString: db.url, schema: db.schema, name: 'lookup-budget-key', min: 0 })
  await app.register(apiKeysPlugin, {
    followChanges: false,
    cache: false,
    lookupBudget: { limit: 1, windowMs: 60_000, prefix: `${uniqueName('lookups')}:`, key: (request) => `tenant:${String(request.headers['x-tenant'])}` }
  })
  app.get('/things', { config: { requiredScope: 'things:read' } }, async () => ({}))
  const invented = (n: number): string => `lck_inventedkey${n}_${'b'.repeat(43)}`
  const ask = async (tenant: string, n: number): Promise<number> => (await app.inject({ url: '/things', headers: { 'x-tenant': tenant, 'x-api-key': invented(n) } })).statusCode
  // Every injected request comes from 127.0.0.1: charged by address (the default), the third would be refused too.
  assert.equal(await ask('a', 1), 401)
  assert.equal(await ask('a', 2), 429)
  assert.equal(await ask('b', 3), 401)
})
