import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { queryChannel, type QueryContext } from '@lead-chassis/plugins/db-pool'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'
import { recordCommands } from '../../test/helpers/redis-commands.js'

// What keys cost before they are known: lookups in PostgreSQL (counted on the query seam), Redis commands and cache
// entries, against real PostgreSQL and Redis.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let lookups = 0
const countLookups = { start: (ctx: QueryContext) => { if (ctx.text.includes('FROM api_keys WHERE id')) lookups++ } }

before(async () => {
  db = await createTestSchema()
  queryChannel.subscribe(countLookups as never)
})

after(async () => {
  queryChannel.unsubscribe(countLookups as never)
  await db?.drop()
})

/** A key of the minted shape (lck_<12 alphanumerics>_<43 base64url>) that was never minted. */
function inventedKey (): string {
  const id = randomBytes(12).toString('base64').replace(/[^A-Za-z0-9]/g, 'A').slice(0, 12)
  return `lck_${id}_${randomBytes(32).toString('base64url')}`
}

/**
 * Whether a command concerns the requests sent: a key under the rate-limit prefix (their address's lookup budget or
 * limit; the presence set aside, which a timer beats every second) or a cached verdict of one of their keys. The app
 * also sends commands of its own meanwhile: timers (presence, hot keys), and the purge of cached verdicts that a
 * database notification of a key change asks for, which the other test files cause by minting and revoking keys in
 * the same database.
 */
function aboutRequests (command: string, env: { CACHE_PREFIX: string, RATE_LIMIT_PREFIX: string }, ids: Set<string>): boolean {
  return command.split(' ').slice(1).some((key) => (key.startsWith(env.RATE_LIMIT_PREFIX) && key !== `${env.RATE_LIMIT_PREFIX}instances`) ||
    (key.startsWith(`${env.CACHE_PREFIX}apikey:`) && ids.has(key.slice(`${env.CACHE_PREFIX}apikey:`.length))))
}

async function app (env: Record<string, string>, redis?: Redis): Promise<FastifyInstance> {
  const built = await buildApp(testApiConfig(db, { ...prefixes(), ...env }), redis ? { redis } : {})
  return built
}

function prefixes (): { CACHE_PREFIX: string, RATE_LIMIT_PREFIX: string } {
  return { CACHE_PREFIX: `${uniqueName('kl')}:`, RATE_LIMIT_PREFIX: `${uniqueName('kl-rl')}:` }
}

test('1,000 invented keys from one address cost at most API_KEY_LOOKUP_LIMIT lookups, no cache entry, and 429 once over', async (t) => {
  const redis = new Redis(REDIS_URL, { commandTimeout: 2000, maxRetriesPerRequest: 1 })
  // A generous Redis budget: on a busy machine a timeout would count in process instead, which is not what is measured.
  const env = prefixes()
  const api = await app({ ...env, RATE_LIMIT_ENABLED: 'true', REDIS_COMMAND_TIMEOUT_MS: '2000' }, redis)
  t.after(async () => { await api.close(); redis.disconnect() })
  const localBefore = api.cache.getStats().local.entries
  lookups = 0
  const answers = await Promise.all(Array.from({ length: 1000 }, () =>
    api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': inventedKey() }, remoteAddress: '203.0.113.10' })))
  const counts = new Map<string, number>()
  for (const a of answers) counts.set(`${a.statusCode} ${a.json().code as string}`, (counts.get(`${a.statusCode} ${a.json().code as string}`) ?? 0) + 1)
  t.diagnostic(`PostgreSQL lookups for 1,000 invented keys from one address: ${lookups}`)
  assert.equal(lookups, 50, 'the default budget: 50 lookups')
  assert.deepEqual(Object.fromEntries(counts), { '401 INVALID_API_KEY': 50, '429 API_KEY_LOOKUPS_EXCEEDED': 950 })
  const refused = answers.find((a) => a.statusCode === 429)
  assert.ok(Number(refused?.headers['retry-after']) >= 1, 'Retry-After on the refusal')
  assert.match(String(refused?.json().message), /50 per 60 s/)
  assert.equal(api.cache.getStats().local.entries, localBefore, 'no local cache entry for an unknown key')
  const prefix = api.cache.options.prefix
  const stored = await redis.keys(`${prefix}apikey:*`)
  assert.deepEqual(stored, [], 'no Redis cache entry for an unknown key')

  // Known to be over: further invented keys are refused from memory.
  const commands = recordCommands(redis)
  lookups = 0
  const ids = new Set<string>()
  for (let i = 0; i < 200; i++) {
    const key = inventedKey()
    ids.add(key.split('_')[1] ?? '')
    const res = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '203.0.113.10' })
    assert.equal(res.statusCode, 429)
  }
  assert.equal(lookups, 0, 'no PostgreSQL lookup once over the budget')
  commands.stop()
  const sent = commands.sent()
  assert.deepEqual(sent.filter((command) => aboutRequests(command, env, ids)), [], `no Redis command for these requests once over the budget (all sent: ${sent.join(', ')})`)
})

test('malformed keys are refused with 401 without a lookup and without spending the lookup budget', async (t) => {
  const api = await app({ API_KEY_LOOKUP_LIMIT: '1' })
  t.after(() => api.close())
  const valid = inventedKey()
  const malformed = [
    'not-a-key', '', 'lck_', valid.replace('lck_', 'lcx_'), valid.slice(0, -1), `${valid}A`, valid.replace(/_([A-Za-z0-9]{3})/, '_$1!'),
    `lck_${'A'.repeat(11)}_${'B'.repeat(44)}`, valid.replace(/^lck_(.)/, 'lck_-'), `${valid.slice(0, 20)} ${valid.slice(21)}`, 'lck_AAAAAAAAAAAA_' + 'é'.repeat(43)
  ]
  lookups = 0
  for (let i = 0; i < 300; i++) {
    const res = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': malformed[i % malformed.length] as string }, remoteAddress: '203.0.113.20' })
    assert.equal(res.statusCode, 401, `${malformed[i % malformed.length]}: ${res.body}`)
  }
  assert.equal(lookups, 0)
  const first = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': valid }, remoteAddress: '203.0.113.20' })
  assert.equal(first.json().code, 'INVALID_API_KEY', 'the budget (1) is still whole')
  assert.equal(lookups, 1)
})

test('API_KEY_LOOKUP_LIMIT and API_KEY_LOOKUP_WINDOW_MS set the budget; a valid key in a burst costs one lookup and is never refused', async (t) => {
  const api = await app({ REDIS_URL, REDIS_COMMAND_TIMEOUT_MS: '2000', API_KEY_LOOKUP_LIMIT: '2', API_KEY_LOOKUP_WINDOW_MS: '1000' })
  t.after(() => api.close())
  const { key } = await api.apiKeys.mint('burst', ['leads:read'])
  lookups = 0
  const burst = await Promise.all(Array.from({ length: 200 }, () => api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '203.0.113.30' })))
  assert.deepEqual([...new Set(burst.map((r) => r.statusCode))], [200])
  assert.equal(lookups, 1, '200 concurrent requests with one new key share one lookup')
  const ask = async (): Promise<string> => (await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': inventedKey() }, remoteAddress: '203.0.113.30' })).json().code as string
  assert.equal(await ask(), 'INVALID_API_KEY', 'the second unit of 2')
  assert.equal(await ask(), 'API_KEY_LOOKUPS_EXCEEDED')
  const verified = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '203.0.113.30' })
  assert.equal(verified.statusCode, 200, 'a key verified here before is not charged again')
  const deadline = Date.now() + 15_000
  let code = 'API_KEY_LOOKUPS_EXCEEDED'
  while (code === 'API_KEY_LOOKUPS_EXCEEDED' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    code = await ask()
  }
  assert.equal(code, 'INVALID_API_KEY', 'the budget comes back after its one-second window')
  const other = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': inventedKey() }, remoteAddress: '203.0.113.31' })
  assert.equal(other.json().code, 'INVALID_API_KEY', 'another address has its own budget')
})

test('invented keys do not evict warm entries from the local cache tier', async (t) => {
  const api = await app({ API_KEY_LOOKUP_LIMIT: '0', CACHE_LOCAL_MAX_ENTRIES: '100' })
  t.after(() => api.close())
  for (let i = 0; i < 90; i++) await api.cache.set(`warm:${i}`, { i })
  lookups = 0
  for (let i = 0; i < 500; i++) {
    const res = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': inventedKey() }, remoteAddress: `198.51.100.${i % 250}` })
    assert.equal(res.statusCode, 401)
  }
  assert.equal(lookups, 500, 'with the budget off (0) every invented key is looked up')
  const warm = Array.from({ length: 90 }, (_, i) => api.cache.peek(`warm:${i}`)).filter((v) => v !== undefined)
  assert.equal(warm.length, 90, 'every warm entry is still in the local tier')
  assert.equal(api.cache.getStats().local.evictions, 0)
})

test('a client repeating one unknown key costs one lookup, not one per request', async (t) => {
  const api = await app({ API_KEY_LOOKUP_LIMIT: '3' })
  t.after(() => api.close())
  const wrong = inventedKey()
  lookups = 0
  for (let i = 0; i < 50; i++) {
    const res = await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': wrong }, remoteAddress: '203.0.113.50' })
    assert.equal(res.json().code, 'INVALID_API_KEY', `request ${i}`)
  }
  assert.equal(lookups, 1)
  const { key } = await api.apiKeys.mint('after', ['leads:read'])
  assert.equal((await api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '203.0.113.50' })).statusCode, 200, 'the budget is not spent')
})

test('an address over its lookup budget does not hand its 429 to another address verifying a valid key with the same id at that moment', async (t) => {
  const api = await app({ API_KEY_LOOKUP_LIMIT: '1' })
  t.after(() => api.close())
  const victim = await api.apiKeys.mint('victim', ['leads:read'])
  const id = victim.key.split('_')[1] ?? ''
  const get = (key: string, remoteAddress: string) => api.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress })
  assert.equal((await get(inventedKey(), '203.0.113.9')).statusCode, 401)
  const [attacker, valid] = await Promise.all([get(`lck_${id}_${'b'.repeat(43)}`, '203.0.113.9'), get(victim.key, '198.51.100.7')])
  assert.equal(attacker.statusCode, 429)
  assert.equal(valid.statusCode, 200, valid.body)
})
