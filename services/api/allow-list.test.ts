import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'

// Behind the trusted proxy (inject's peer is 127.0.0.1) the client address is the one X-Forwarded-For names: the
// allow list must be matched against it, for the rate limiter and for the key-lookup budget alike.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema

/** A well-formed key no one minted: it costs a lookup. */
const inventedKey = (): string => `lck_${randomBytes(12).toString('base64').replace(/[^A-Za-z0-9]/g, 'A').slice(0, 12)}_${randomBytes(32).toString('base64url')}`
let app: FastifyInstance

before(async () => {
  db = await createTestSchema()
  app = await buildApp(testApiConfig(db, {
    REDIS_URL, TRUST_PROXY: '127.0.0.1/32', RATE_LIMIT_ALLOWLIST: '10.0.0.0/8', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '2',
    API_KEY_LOOKUP_LIMIT: '2', REDIS_COMMAND_TIMEOUT_MS: '2000', CACHE_PREFIX: `${uniqueName('allow')}:`, RATE_LIMIT_PREFIX: `${uniqueName('allow-rl')}:`
  }))
})

after(async () => {
  await app?.close()
  await db?.drop()
})

test('behind a trusted proxy, a client the allow list names is neither rate limited nor charged for key lookups, and one it does not name is', async () => {
  const from = (address: string, headers: Record<string, string> = {}) => app.inject({ url: '/nowhere', headers: { 'x-forwarded-for': address, ...headers } })
  for (let i = 0; i < 5; i++) {
    const listed = await from('10.1.2.3')
    assert.equal(listed.statusCode, 404)
    assert.equal(listed.headers['x-ratelimit-limit'], undefined)
  }
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await from('203.0.113.9')).statusCode)
  assert.deepEqual(statuses, [404, 404, 429])
  for (let i = 0; i < 4; i++) {
    const wrongKey = await from('10.1.2.3', { 'x-api-key': inventedKey() })
    assert.equal(wrongKey.statusCode, 401, wrongKey.body)
  }
})
