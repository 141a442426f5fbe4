import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from './app.js'
import { createTestSchema, testApiConfig, uniqueName } from '../../test/helpers/database.js'

test('the api applies the default preset from RATE_LIMIT_* across two instances sharing Redis', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '5', RATE_LIMIT_WINDOW_MS: '60000', RATE_LIMIT_PREFIX: `${uniqueName('rl')}:` }
  const a = await buildApp(testApiConfig(db, env))
  const b = await buildApp(testApiConfig(db, env))
  t.after(() => a.close())
  t.after(() => b.close())
  await new Promise((resolve) => setTimeout(resolve, 100))
  const statuses = []
  for (let i = 0; i < 8; i++) {
    const payload = { firstName: 'Ann', lastName: 'Lee', email: `ann.${i}@example.com`, product: 'auto', state: 'CA' }
    statuses.push((await (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/v1/leads', payload })).statusCode)
  }
  assert.deepEqual(statuses, [201, 201, 201, 201, 201, 429, 429, 429], 'anonymous lead capture, limited per address across instances')
  const refused = await a.inject('/api/v1/leads?limit=1')
  assert.equal(refused.statusCode, 429, 'the limiter answers before authentication, so bad keys cannot flood')
  assert.equal(refused.json().code, 'RATE_LIMITED')
  assert.match(refused.json().message, /"default" exceeded: 5 requests per 60 s/)
  const [rows] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(rows?.n, 5, 'refused requests wrote nothing')
  assert.equal((await a.inject('/health/ready')).statusCode, 200, 'probes are not limited')
})

test('a URL the router refuses is limited per key for a caller with a valid key and per address otherwise, as a 404 is', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '3', RATE_LIMIT_API_KEY_MAX_REQUESTS: '5', RATE_LIMIT_WINDOW_MS: '60000', RATE_LIMIT_PREFIX: `${uniqueName('rl')}:` }
  const app = await buildApp(testApiConfig(db, env))
  t.after(() => app.close())
  const { key } = await app.apiKeys.mint('refused-urls', ['leads:read'])
  const anonymous = { remoteAddress: '198.51.100.80' }
  const withKey = { remoteAddress: '198.51.100.80', headers: { 'x-api-key': key } }
  const send = async (url: string, opts: typeof anonymous | typeof withKey): Promise<Array<string | number | undefined>> => {
    const res = await app.inject({ url, ...opts })
    return [res.statusCode, res.json().code, res.headers['x-ratelimit-limit'] as string | undefined]
  }
  const anonymousAnswers = []
  for (let i = 0; i < 4; i++) anonymousAnswers.push(await send('/api/v1/leads/%zz', anonymous))
  assert.deepEqual(anonymousAnswers, [[400, 'BAD_URL', '3'], [400, 'BAD_URL', '3'], [400, 'BAD_URL', '3'], [429, 'RATE_LIMITED', '3']])
  assert.deepEqual(await send('/nowhere', anonymous), [429, 'RATE_LIMITED', '3'], 'one budget per address, whatever the URL')
  const keyAnswers = []
  for (let i = 0; i < 6; i++) keyAnswers.push(await send(i % 2 === 0 ? '/api/v1/leads/%C0%AF' : '/nowhere', withKey))
  assert.deepEqual(keyAnswers, [
    [400, 'BAD_URL', '5'], [404, 'NOT_FOUND', '5'], [400, 'BAD_URL', '5'], [404, 'NOT_FOUND', '5'], [400, 'BAD_URL', '5'], [429, 'RATE_LIMITED', '5']
  ], 'the key\'s own budget, not its exhausted address\'s')
})

test('two api instances sharing Redis count as two in the presence set, not four: during an outage each admits half of a limit, not a quarter', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = `${uniqueName('rl')}:`
  // The key-lookup budget is a limiter of its own beside the request limiter; both announce the instance.
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', RATE_LIMIT_ENABLED: 'true', API_KEY_LOOKUP_LIMIT: '50', RATE_LIMIT_PREFIX: prefix }
  const a = await buildApp(testApiConfig(db, env))
  t.after(() => a.close())
  const b = await buildApp(testApiConfig(db, env))
  t.after(() => b.close())
  // Past a heartbeat (1 s), so every limiter of both instances has announced itself and read the count.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(await a.redis?.zcard(`${prefix}instances`), 2, 'members of the presence set')
  assert.equal(a.rateLimiter.getStats().instances, 2)
  assert.equal(b.rateLimiter.getStats().instances, 2)
})

test('the api warns RATE_LIMIT_UNPARSED_ADDRESS once when a trusted proxy sends an address with its port, as the runbook says it will', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PREFIX: `${uniqueName('rl')}:`, TRUST_PROXY: '10.0.0.0/8' }
  const app = await buildApp(testApiConfig(db, env))
  t.after(() => app.close())
  const warn = t.mock.method(app.log, 'warn')
  const send = async (xff: string): Promise<number> => (await app.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': xff } })).statusCode
  await send('198.51.100.7')
  await send('198.51.100.7:51234')
  await send('198.51.100.8:40000')
  const said = warn.mock.calls.map((c) => JSON.stringify(c.arguments)).filter((line) => line.includes('RATE_LIMIT_UNPARSED_ADDRESS'))
  assert.equal(said.length, 1, JSON.stringify(warn.mock.calls.map((c) => c.arguments)))
  assert.doesNotMatch(said[0] ?? '', /51234|198\.51\.100/)
})
