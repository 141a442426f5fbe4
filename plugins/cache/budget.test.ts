import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRedisClient } from '../redis/index.js'
import { createCacheManager } from './cache-manager.js'
import { uniqueName } from '../../test/helpers/database.js'
import { blockAfterNextCommand } from '../../test/helpers/event-loop.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

// API keys are looked up through this path (the key store's getOrSet), so a blocked loop does not send a key's
// verification to PostgreSQL either.
test('a Redis hit whose reply waited in the socket while the event loop was blocked is served from Redis, not loaded again', async (t) => {
  const client = createRedisClient({ url: REDIS_URL, commandTimeoutMs: 50 })
  t.after(() => client.disconnect())
  const prefix = `${uniqueName('budget')}:`
  const writer = createCacheManager(client, { prefix, redisTimeoutMs: 50 })
  t.after(() => writer.close())
  const reader = createCacheManager(client, { prefix, redisTimeoutMs: 50, localEnabled: false })
  t.after(() => reader.close())
  assert.ok(await writer.ready())
  await writer.set('k', 'in redis')
  let loads = 0
  blockAfterNextCommand(client, 300)
  const read = await reader.getOrSetWithSource('k', async () => { loads++; return 'from the loader' })
  assert.deepEqual(read, { value: 'in redis', source: 'redis' })
  assert.equal(loads, 0)
  assert.equal(reader.getStats().redis.timeouts, 0)
  assert.equal(reader.getStats().redis.breaker, 'closed')
})
