import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildService, chassisConfigFragment, composeSchema, loadConfig, type ChassisConfig } from '../chassis/index.js'
import { rateLimitPlugin, type PolicyLike, type RateLimitPluginOptions } from './plugin.js'
import { RateLimiter } from './rate-limiter.js'
import { MemoryStore } from './memory-store.js'
import type { RateLimitStore } from './store.js'
import { clientAddressKey } from './identity.js'
import { redisPlugin } from '../redis/index.js'
import { uniqueName } from '../../test/helpers/database.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function build (t: { after: (fn: () => Promise<void>) => void }, options: RateLimitPluginOptions = {}, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent', ...env }, dotenv: false })
  const app = await buildService({
    name: 'rl-test',
    config,
    plugins: [(a) => a.register(rateLimitPlugin, { global: { name: 'global', limit: 3, windowMs: 60000 }, ...options })],
    routes: [(a) => {
      a.get('/open', async () => ({ ok: true }))
      a.get('/free', { config: { rateLimit: false } }, async () => ({ ok: true }))
      a.get('/admin', { config: { rateLimit: { name: 'admin', limit: 1, windowMs: 60000 } } }, async () => ({ ok: true }))
      a.get('/roomy', { config: { rateLimit: { name: 'roomy', limit: 100, windowMs: 60000 } } }, async () => ({ ok: true }))
    }]
  })
  t.after(() => app.close())
  return app
}

test('globalForPolicies is checked at registration: a list of valid policies of names of their own, with a globalFor', async (t) => {
  const partner = { name: 'partner', limit: 5, windowMs: 1000 }
  const globalFor = (): undefined => undefined
  const refused = async (options: Partial<RateLimitPluginOptions>, message: RegExp): Promise<void> => {
    await assert.rejects(build(t, options as RateLimitPluginOptions), { code: 'RATE_LIMIT_INVALID_OPTIONS', message })
  }
  await refused({ globalFor, globalForPolicies: partner as never }, /globalForPolicies must be a list of policies/)
  await refused({ globalForPolicies: [partner] }, /globalForPolicies is given without a globalFor/)
  await refused({ globalFor, globalForPolicies: [null as never] }, /globalForPolicies\[0\] must be a policy object/)
  await refused({ globalFor, globalForPolicies: ['apiKey' as never] }, /globalForPolicies\[0\] must be a policy object/)
  await refused({ globalFor, globalForPolicies: [partner, { ...partner, limit: 0 }] }, /globalForPolicies\[1\]: .*limit must be a positive integer/)
  await refused({ globalFor, globalForPolicies: [partner, { ...partner }] }, /globalForPolicies\[1\]: "partner" is listed twice/)
  await refused({ globalFor, globalForPolicies: [{ ...partner, name: 'apiKey' }] }, /globalForPolicies\[0\]: "apiKey" is a preset's name/)
  const app = await build(t, { globalFor, globalForPolicies: [partner] })
  assert.equal((await app.inject('/open')).statusCode, 200)
})

test('a policy globalFor returns that is not declared, or fails or reports otherwise than declared, is logged once per name as RATE_LIMIT_UNDECLARED_POLICY', async (t) => {
  const declared = { name: 'partner', limit: 100, windowMs: 60000 }
  let returned: PolicyLike = declared
  const app = await build(t, { globalFor: () => returned, globalForPolicies: [declared] })
  const warn = t.mock.method(app.log, 'warn')
  const codes = (): string[] => warn.mock.calls.map((c) => (c.arguments[0] as { code?: string }).code ?? '')
  const undeclared = (): number => codes().filter((c) => c === 'RATE_LIMIT_UNDECLARED_POLICY').length
  await app.inject('/open')
  returned = { ...declared }
  await app.inject('/open')
  returned = 'apiKey'
  await app.inject('/open')
  assert.equal(undeclared(), 0, 'the declared policy, a copy of it and a preset are declared')
  returned = { ...declared, onStoreFailure: 'closed' }
  await app.inject('/open')
  await app.inject('/open')
  assert.equal(undeclared(), 1, 'the same name failing otherwise than declared: said once')
  returned = { name: 'other', limit: 100, windowMs: 60000 }
  await app.inject('/open')
  await app.inject('/open')
  assert.equal(undeclared(), 2, 'another name: said once too')
})

test('a request refused by an enforced policy is answered 429, not 503, when a shadow policy that fails closed cannot reach its store', async (t) => {
  const store = new MemoryStore()
  // The store answers the enforced policies and fails the shadow one.
  const shadowFails: RateLimitStore = { check: async (c) => { if (c.policies.some((p) => p.shadow === true)) throw new Error('store down'); return await store.check(c) } }
  const app = await build(t, { store: shadowFails, global: { name: 'watch', limit: 1000, windowMs: 60000, shadow: true, onStoreFailure: 'closed' } })
  assert.equal((await app.inject('/admin')).statusCode, 200)
  const refused = await app.inject('/admin')
  assert.equal(refused.json<{ code: string }>().code, 'RATE_LIMITED')
  assert.equal(refused.statusCode, 429)
})

test('a shadow policy is left out of the rate-limit headers: an exhausted one, or one whose store is down, does not tell an admitted caller remaining 0', async (t) => {
  const fields = (r: { headers: Record<string, unknown> }): unknown[] => ['x-ratelimit-limit', 'x-ratelimit-remaining', 'ratelimit-policy', 'ratelimit'].map((h) => r.headers[h])
  const watch = { name: 'watch', limit: 1, windowMs: 60000, shadow: true }
  const app = await build(t, { store: new MemoryStore(), global: watch })
  for (let i = 0; i < 3; i++) {
    const roomy = await app.inject('/roomy')
    assert.equal(roomy.statusCode, 200)
    assert.deepEqual(fields(roomy), ['100', String(99 - i), '"roomy";q=100;w=60', `"roomy";r=${99 - i};t=60`], `request ${i + 1}: the enforced policy's figures alone`)
  }
  const onlyShadow = await app.inject('/open')
  assert.equal(onlyShadow.statusCode, 200, 'a shadow policy never refuses')
  assert.deepEqual(fields(onlyShadow), [undefined, undefined, undefined, undefined], 'a route limited by shadow policies alone carries no rate-limit field')
  assert.equal(app.rateLimiter.getStats().policies.watch?.shadowLimited, 3, 'the shadow policy still reports what it would have refused')

  // The shadow policy fails closed and its store is down: the enforced policy's figures, not remaining 0.
  const store = new MemoryStore()
  const shadowFails: RateLimitStore = { check: async (c) => { if (c.policies.some((p) => p.shadow === true)) throw new Error('store down'); return await store.check(c) } }
  const outage = await build(t, { store: shadowFails, global: { ...watch, limit: 1000, onStoreFailure: 'closed' } })
  const admitted = await outage.inject('/roomy')
  assert.equal(admitted.statusCode, 200)
  assert.deepEqual(fields(admitted), ['100', '99', '"roomy";q=100;w=60', '"roomy";r=99;t=60'])
})

test('headers on every answer; 429 with the real Retry-After and a body naming the policy', async (t) => {
  const app = await build(t)
  const first = await app.inject('/open')
  assert.equal(first.headers['x-ratelimit-limit'], '3')
  assert.equal(first.headers['x-ratelimit-remaining'], '2')
  const reset = Number(first.headers['x-ratelimit-reset'])
  assert.ok(reset >= Math.floor(Date.now() / 1000) + 59 && reset <= Math.ceil(Date.now() / 1000) + 60, `reset ${reset}`)
  assert.equal(first.headers['ratelimit-policy'], '"global";q=3;w=60')
  assert.equal(first.headers.ratelimit, '"global";r=2;t=60')
  await app.inject('/open')
  await app.inject('/open')
  const refused = await app.inject('/open')
  assert.equal(refused.statusCode, 429)
  assert.equal(refused.headers['x-ratelimit-remaining'], '0')
  const retry = Number(refused.headers['retry-after'])
  assert.ok(retry >= 59 && retry <= 60, `retry-after ${retry}`)
  assert.deepEqual(refused.json(), { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: `Rate limit "global" exceeded: 3 requests per 60 s; retry in ${retry} s` })
})

test('headers: x-ratelimit sends only the X-RateLimit fields, draft only the draft\'s; a refusal has Retry-After either way', async (t) => {
  const legacy = await build(t, { headers: 'x-ratelimit' })
  const draft = await build(t, { headers: 'draft' })
  for (let i = 0; i < 3; i++) {
    await legacy.inject('/open')
    await draft.inject('/open')
  }
  const [legacyOk, legacyRefused] = [await legacy.inject('/free'), await legacy.inject('/open')]
  assert.equal(legacyOk.headers['x-ratelimit-limit'], undefined)
  assert.equal(legacyRefused.statusCode, 429)
  assert.equal(legacyRefused.headers['x-ratelimit-limit'], '3')
  assert.equal(legacyRefused.headers['x-ratelimit-remaining'], '0')
  assert.ok(Number(legacyRefused.headers['x-ratelimit-reset']) > Date.now() / 1000)
  assert.equal(legacyRefused.headers['ratelimit-policy'], undefined)
  assert.equal(legacyRefused.headers.ratelimit, undefined)
  assert.ok(Number(legacyRefused.headers['retry-after']) >= 59)
  const draftRefused = await draft.inject('/open')
  assert.equal(draftRefused.statusCode, 429)
  assert.equal(draftRefused.headers['ratelimit-policy'], '"global";q=3;w=60')
  assert.match(String(draftRefused.headers.ratelimit), /^"global";r=0;t=(59|60)$/)
  for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) assert.equal(draftRefused.headers[name], undefined, name)
  assert.ok(Number(draftRefused.headers['retry-after']) >= 59)
  await assert.rejects(build(t, { headers: 'all' as 'both' }), { code: 'RATE_LIMIT_INVALID_OPTIONS', message: /headers must be one of both, x-ratelimit, draft/ })
})

test('a route can opt out; route limits layer over the global one; probes are never limited', async (t) => {
  const app = await build(t)
  for (let i = 0; i < 5; i++) assert.equal((await app.inject('/free')).statusCode, 200)
  assert.equal((await app.inject('/free')).headers['x-ratelimit-limit'], undefined)
  const admin = await app.inject('/admin')
  assert.equal(admin.statusCode, 200)
  assert.match(String(admin.headers['ratelimit-policy']), /"global";q=3;w=60, "admin";q=1;w=60/)
  const second = await app.inject('/admin')
  assert.equal(second.statusCode, 429)
  assert.match(second.json().message, /"admin"/)
  assert.equal((await app.inject('/open')).headers['x-ratelimit-remaining'], '1', 'the refused admin request did not count globally')
  for (let i = 0; i < 10; i++) assert.equal((await app.inject('/health/live')).statusCode, 200)
})

test('trusted sources on the allowlist are not limited', async (t) => {
  const app = await build(t, { allowList: ['10.0.0.0/8'] })
  for (let i = 0; i < 6; i++) assert.equal((await app.inject({ url: '/open', remoteAddress: '10.1.2.3' })).statusCode, 200)
  for (let i = 0; i < 3; i++) await app.inject({ url: '/open', remoteAddress: '203.0.113.9' })
  assert.equal((await app.inject({ url: '/open', remoteAddress: '203.0.113.9' })).statusCode, 429)
})

test('a forged X-Forwarded-For from an untrusted peer buys no new quota; a trusted proxy passes the client on', async (t) => {
  const app = await build(t, {}, { TRUST_PROXY: '10.0.0.0/8' })
  for (let i = 0; i < 3; i++) await app.inject({ url: '/open', remoteAddress: '203.0.113.7', headers: { 'x-forwarded-for': `198.51.100.${i}` } })
  const forged = await app.inject({ url: '/open', remoteAddress: '203.0.113.7', headers: { 'x-forwarded-for': '198.51.100.99' } })
  assert.equal(forged.statusCode, 429)
  for (let i = 0; i < 3; i++) {
    const viaProxy = await app.inject({ url: '/open', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': `192.0.2.${i}` } })
    assert.equal(viaProxy.statusCode, 200, 'each client behind the proxy has its own quota')
  }
})

test('a client address that is not an IP address (a name or phone a trusted proxy passed on) becomes no rate-limit key: such callers share one quota', async (t) => {
  const app = await build(t, {}, { TRUST_PROXY: '10.0.0.0/8' })
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ url: '/open', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': `AnnLee555123456${i}` } })
    assert.equal(res.statusCode, 200)
  }
  assert.equal((await app.inject({ url: '/open', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': 'BeaLee5559876543' } })).statusCode, 429)
  assert.equal(clientAddressKey('AnnLee5551234567'), clientAddressKey('BeaLee5559876543'))
  assert.ok(!clientAddressKey('AnnLee5551234567').includes('5551234567'))
})

test('callers sharing the quota of addresses that are not IP addresses are said once in the log, without the address', async (t) => {
  const app = await build(t, {}, { TRUST_PROXY: '10.0.0.0/8' })
  const warn = t.mock.method(app.log, 'warn')
  assert.equal((await app.inject({ url: '/open', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': '198.51.100.7' } })).statusCode, 200)
  assert.equal(warn.mock.callCount(), 0, 'an IP address is no warning')
  for (const address of ['AnnLee5551234567', '198.51.100.7:51234']) {
    await app.inject({ url: '/open', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': address } })
  }
  assert.equal(warn.mock.callCount(), 1)
  const line = JSON.stringify(warn.mock.calls[0]?.arguments)
  assert.match(line, /RATE_LIMIT_UNPARSED_ADDRESS/)
  assert.match(line, /share one rate-limit quota/)
  assert.doesNotMatch(line, /AnnLee|5551234567|51234/)
})

test('IPv6 clients are grouped by /64', async (t) => {
  const app = await build(t)
  for (let i = 1; i <= 3; i++) assert.equal((await app.inject({ url: '/open', remoteAddress: `2001:db8:1:2::${i}` })).statusCode, 200)
  assert.equal((await app.inject({ url: '/open', remoteAddress: '2001:db8:1:2:ffff::9' })).statusCode, 429)
  assert.equal((await app.inject({ url: '/open', remoteAddress: '2001:db8:1:3::1' })).statusCode, 200)
})

test('a custom key, cost and handler', async (t) => {
  const app = await build(t, {
    keyGenerator: (req) => String(req.headers['x-user'] ?? 'anonymous'),
    cost: (req) => Number(req.headers['x-cost'] ?? 1),
    onExceeded: (_req, reply) => reply.code(429).send({ custom: true })
  })
  assert.equal((await app.inject({ url: '/open', headers: { 'x-user': 'u1', 'x-cost': '3' } })).statusCode, 200)
  const refused = await app.inject({ url: '/open', headers: { 'x-user': 'u1' } })
  assert.deepEqual(refused.json(), { custom: true })
  assert.equal((await app.inject({ url: '/open', headers: { 'x-user': 'u2' } })).statusCode, 200)
})

test('a handler that only observes a refusal leaves the default 429', async (t) => {
  const seen: string[] = []
  const app = await build(t, { keyGenerator: () => 'observed', onExceeded: (req) => { seen.push(req.url) } })
  for (let i = 0; i < 3; i++) await app.inject({ url: '/open' })
  const refused = await app.inject({ url: '/open' })
  assert.equal(refused.statusCode, 429)
  assert.equal(refused.json().code, 'RATE_LIMITED')
  assert.deepEqual(seen, ['/open'])
})

test('a URL the router refuses is rate limited like any other request', async (t) => {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  const app = await buildService({
    name: 'rl-refused-test',
    config,
    plugins: [
      (a) => a.register(redisPlugin, { url: REDIS_URL }),
      (a) => a.register(rateLimitPlugin, { global: { name: 'global', limit: 3, windowMs: 60000 }, prefix: `${uniqueName('rl')}:` })
    ],
    routes: [(a) => { a.get('/own/:id', async () => ({ ok: true })) }]
  })
  t.after(() => app.close())
  const client = { remoteAddress: '203.0.113.60' }
  const refused = await Promise.all(['/own/%zz', '/own/%C0%AF', `/own/${'a'.repeat(101)}`].map(async (url) => app.inject({ url, ...client })))
  assert.deepEqual(refused.map((r) => r.statusCode), [400, 400, 414])
  assert.deepEqual(refused.map((r) => r.headers['x-ratelimit-remaining']).sort(), ['0', '1', '2'])
  const over = await app.inject({ url: '/own/%zz', ...client })
  assert.equal(over.statusCode, 429)
  const retry = Number(over.headers['retry-after'])
  assert.ok(retry >= 59 && retry <= 60, `retry-after ${retry}`)
  assert.deepEqual(over.json(), { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: `Rate limit "global" exceeded: 3 requests per 60 s; retry in ${retry} s` })
  assert.equal((await app.inject({ url: '/own/fine', ...client })).statusCode, 429, 'refused URLs spent the budget every request spends')
  // The same answer headers as a 404 of another client: rate-limit fields, security headers, request id.
  const notFound = await app.inject({ url: '/missing', remoteAddress: '203.0.113.61' })
  const badUrl = await app.inject({ url: '/own/%zz', remoteAddress: '203.0.113.62' })
  assert.deepEqual([notFound.statusCode, badUrl.statusCode], [404, 400])
  assert.deepEqual(Object.keys(badUrl.headers).sort(), Object.keys(notFound.headers).sort())
  const stats = app.rateLimiter.getStats()
  assert.equal(stats.policies.global?.fallback, 0, 'decided in Redis')
  assert.equal(stats.policies.global?.limited, 2)
})

async function bootWithRoute (config: { rateLimit?: unknown }): Promise<FastifyInstance> {
  const settings = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  return buildService({
    name: 'rl-route-test',
    config: settings,
    plugins: [(a) => a.register(rateLimitPlugin, {})],
    routes: [(a) => { a.get('/reports', { config: config as never }, async () => ({ ok: true })) }]
  })
}

test('a misspelt route rate-limit preset fails ready()', async () => {
  await assert.rejects(bootWithRoute({ rateLimit: 'stict' }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'RATE_LIMIT_INVALID_ROUTE_SETTING')
    assert.match(e.message, /GET \/reports/)
    assert.match(e.message, /"stict"/)
    assert.match(e.message, /Unknown rate-limit preset "stict"/)
    return true
  })
})

test('a route rate-limit policy with limit 0 fails ready()', async () => {
  await assert.rejects(bootWithRoute({ rateLimit: [{ name: 'reports', limit: 0, windowMs: 1000 }] }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'RATE_LIMIT_INVALID_ROUTE_SETTING')
    assert.match(e.message, /GET \/reports/)
    assert.match(e.message, /reports: limit must be a positive integer/)
    return true
  })
  await assert.rejects(bootWithRoute({ rateLimit: true }), { code: 'RATE_LIMIT_INVALID_ROUTE_SETTING' })
  // A shadow that is not a boolean: the limiter would read a truthy one as report-only, the OpenAPI document not.
  await assert.rejects(bootWithRoute({ rateLimit: { name: 'reports', limit: 5, windowMs: 1000, shadow: 'yes' } }), /reports: shadow must be true or false/)
  await assert.rejects(bootWithRoute({ rateLimit: 'constructor' }), /Unknown rate-limit preset "constructor"/)
})

test('getRemainingRequests answers against the configured default limit', async (t) => {
  const app = await build(t, { global: undefined, presets: { default: { limit: 500 } } })
  const res = await app.inject({ url: '/open', remoteAddress: '198.51.100.7' })
  assert.equal(res.headers['x-ratelimit-remaining'], '499')
  assert.equal(await app.rateLimiter.getRemainingRequests(clientAddressKey('198.51.100.7')), 499)
})

test('a rate limiter timer past what a Node timer holds (it would fire at once: every call timed out, the heartbeat in a loop) is refused', () => {
  assert.throws(() => new RateLimiter(undefined, { timeoutMs: 2 ** 31, breakerCooldownMs: 2 ** 31, presenceIntervalMs: 3e9 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'RATE_LIMIT_INVALID_OPTIONS')
    for (const problem of ['timeoutMs must be a positive number up to 107374182', 'breakerCooldownMs must be a non-negative number up to 2147483647', 'presenceIntervalMs must be a positive number up to 2147483647']) assert.match(e.message, new RegExp(problem))
    return true
  })
  assert.doesNotThrow(() => new RateLimiter(undefined, { timeoutMs: 107374182, breakerCooldownMs: 2 ** 31 - 1, presenceIntervalMs: 2 ** 31 - 1 }))
})

test('invalid rate limiter options throw one coded error naming each problem', () => {
  assert.throws(() => new RateLimiter(undefined, { breakerThreshold: 0, timeoutMs: -1, maxKeys: 0, breakerCooldownMs: Number.NaN }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'RATE_LIMIT_INVALID_OPTIONS')
    for (const problem of ['timeoutMs must be a positive number', 'breakerThreshold must be a positive integer', 'maxKeys must be a positive integer', 'breakerCooldownMs must be a non-negative number']) assert.match(e.message, new RegExp(problem))
    return true
  })
})
