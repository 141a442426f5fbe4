import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { closeRedisClient, createRedisClient, redisPlugin } from './index.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

test('an app that closed a client it was given (closeInjected) leaves no error listener on it: reconnected and given to the next app, it logs for that app alone', async (t) => {
  const client = createRedisClient({ url: REDIS_URL, name: 'injected-close-test' })
  t.after(() => closeRedisClient(client))
  await new Promise((resolve) => client.once('ready', resolve))
  const before = client.listenerCount('error')
  const logged: number[] = []
  for (let i = 0; i < 3; i++) {
    if (client.status === 'end') await client.connect()
    const app = Fastify()
    app.log.warn = (() => { logged.push(i) }) as never
    await app.register(redisPlugin, { client, closeInjected: true })
    await app.ready()
    await app.close()
    // closeInjected closes the client; its socket is gone a moment later.
    if (client.status !== 'end') await new Promise((resolve) => client.once('end', resolve))
  }
  assert.equal(client.listenerCount('error'), before)
  await client.connect()
  client.on('error', () => {})
  client.emit('error', new Error('after every app closed'))
  assert.deepEqual(logged, [], 'no closed app logs the error')
})

test('a client given with options it would ignore (a url, a command timeout) is refused at registration, naming them', async (t) => {
  const client = createRedisClient({ url: REDIS_URL, name: 'injected-options-test' })
  t.after(() => closeRedisClient(client))
  const app = Fastify()
  t.after(() => app.close())
  await assert.rejects(async () => { await app.register(redisPlugin, { client, url: 'redis://127.0.0.1:1', commandTimeoutMs: 5 }) }, {
    code: 'REDIS_INVALID_OPTIONS',
    message: 'Invalid Redis client options: url, commandTimeoutMs cannot be given with client, which keeps the options it was made with'
  })
})
