import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Redis } from 'ioredis'
import { createCacheManager } from './cache-manager.js'
import { createRedisClient } from '../redis/index.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'

// A server of the test's own: INFO commandstats counts every client's commands.
const server = await startPrivateRedis()
after(() => server.destroy())

async function calls (client: Redis, command: string): Promise<number> {
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0)
}

test('a Redis hit reads the value with a plain GET, never through a Lua script, which costs Redis ~20 µs per 8 KB', async (t) => {
  const client = createRedisClient({ url: server.url }) as Redis
  const cache = createCacheManager(client, { prefix: 'read:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  const page = { data: Array.from({ length: 20 }, (_, i) => ({ id: i, name: 'x'.repeat(300) })), nextCursor: null }
  await cache.set('page', page)
  const [evalsha, evals, gets, pttls] = [await calls(client, 'evalsha'), await calls(client, 'eval'), await calls(client, 'get'), await calls(client, 'pttl')]
  for (let i = 0; i < 50; i++) assert.deepEqual(await cache.get('page'), page)
  assert.equal(await calls(client, 'evalsha') + await calls(client, 'eval'), evalsha + evals, 'no script per hit')
  assert.equal(await calls(client, 'get') - gets, 50)
  assert.equal(await calls(client, 'pttl') - pttls, 50)
})

test('a budgeted read leaves the client\'s backstop command timeout in place for every other command', async (t) => {
  const client = createRedisClient({ url: server.url, commandTimeoutMs: 100 }) as Redis
  const cache = createCacheManager(client, { prefix: 'backstop:', localEnabled: false })
  t.after(async () => { await cache.close(); await client.quit() })
  assert.ok(await cache.ready())
  const backstop = client.options.commandTimeout
  assert.ok(typeof backstop === 'number' && backstop >= 10_000)
  await cache.set('k', 1)
  await Promise.all([cache.get('k'), cache.get('missing'), cache.mget(['k', 'missing'])])
  assert.equal(client.options.commandTimeout, backstop)
})
