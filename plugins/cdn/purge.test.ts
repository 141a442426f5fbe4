import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { startCdnFakes } from '../../test/helpers/cdn-fakes.js'
import { cdnPlugin, changedPaths, createCdnPurger, type CdnPurgerOptions } from './index.js'

const ZONE = 'zone0123456789abcdef'
const TOKEN = 'cf-token-SECRET-0123456789'
const AWS_KEY = 'AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'

async function fakes (t: { after: (fn: () => Promise<void>) => void }, apiKey: string, failures?: Parameters<typeof startCdnFakes>[0]['failures']) {
  const f = await startCdnFakes({ zoneId: ZONE, apiKey, ...(failures ? { failures } : {}) })
  t.after(f.close)
  return f
}

const base = (url: string, extra: CdnPurgerOptions): CdnPurgerOptions => ({ zoneId: ZONE, apiUrl: url, siteUrl: 'https://leads.example.com', retryBaseMs: 1, ...extra })

test('Cloudflare: paths purge as absolute URLs and prefixes, tags in batches of 100, with the Bearer token', async (t) => {
  const f = await fakes(t, TOKEN)
  const purger = createCdnPurger(base(f.url, { provider: 'cloudflare', apiKey: TOKEN }))
  const tags = Array.from({ length: 250 }, (_, i) => `lead-form-${i}`)
  const result = await purger.purge({ paths: ['/index.html', '/static/*'], tags })
  assert.equal(result.requests.length, 5, 'files, prefixes, then 100 + 100 + 50 tags')
  assert.ok(result.requests.every((r) => r.id?.startsWith('cf-') === true && r.attempts === 1))
  const bodies = f.calls.map((c) => JSON.parse(c.body) as Record<string, string[]>)
  assert.deepEqual(bodies[0], { files: ['https://leads.example.com/index.html'] })
  assert.deepEqual(bodies[1], { prefixes: ['leads.example.com/static/'] })
  assert.deepEqual(bodies.slice(2).map((b) => b.tags?.length), [100, 100, 50])
})

test('Fastly: surrogate keys in batches of 256 with Fastly-Key, one URL purge per path', async (t) => {
  const f = await fakes(t, TOKEN)
  const purger = createCdnPurger(base(f.url, { provider: 'fastly', apiKey: TOKEN }))
  const result = await purger.purge({ paths: ['/index.html'], tags: Array.from({ length: 300 }, (_, i) => `k${i}`) })
  assert.deepEqual(f.calls.map((c) => c.path), ['/purge/leads.example.com/index.html', `/service/${ZONE}/purge`, `/service/${ZONE}/purge`])
  assert.deepEqual(result.requests.map((r) => r.targets.length), [1, 256, 44])
  await assert.rejects(purger.purge({ paths: ['/static/*'] }), { code: 'CDN_UNSUPPORTED_PURGE' })
})

test('CloudFront: an InvalidationBatch signed with SigV4 that the fake verifies; tags are refused', async (t) => {
  const f = await fakes(t, AWS_KEY)
  const purger = createCdnPurger(base(f.url, { provider: 'cloudfront', apiKey: AWS_KEY }))
  const result = await purger.purge({ paths: ['/index.html', '/static/*', '/a&b.html'] })
  assert.equal(result.requests.length, 1)
  assert.match(result.requests[0]?.id ?? '', /^I[A-Z0-9]+$/)
  assert.match(f.calls[0]?.body ?? '', /<Quantity>3<\/Quantity><Items><Path>\/index.html<\/Path><Path>\/static\/\*<\/Path><Path>\/a&amp;b.html<\/Path><\/Items>/)
  await assert.rejects(purger.purge({ tags: ['lead-form'] }), { code: 'CDN_UNSUPPORTED_PURGE' })
  const wrongSecret = createCdnPurger(base(f.url, { provider: 'cloudfront', apiKey: 'AKIDEXAMPLE:not-the-secret', retries: 0 }))
  await assert.rejects(wrongSecret.purge({ paths: ['/index.html'] }), (e: Error & { code: string }) => e.code === 'CDN_PURGE_FAILED' && /SignatureDoesNotMatch/.test(e.message))
})

test('a 429 with Retry-After and a 503 are retried; the purge succeeds on the third attempt', async (t) => {
  const f = await fakes(t, TOKEN, [
    { status: 429, headers: { 'retry-after': '1', 'content-type': 'application/json' }, body: JSON.stringify({ success: false, errors: [{ code: 971, message: 'Please wait and consider throttling your request speed' }] }) },
    { status: 503, body: 'upstream unavailable' }
  ])
  const started = Date.now()
  const result = await createCdnPurger(base(f.url, { provider: 'cloudflare', apiKey: TOKEN })).purge({ tags: ['lead-form'] })
  assert.equal(result.requests[0]?.attempts, 3)
  assert.ok(Date.now() - started >= 1000, 'Retry-After: 1 was honoured')
  assert.equal(f.calls.length, 3)
})

test('a refusal is not retried and is reported in the provider\'s words', async (t) => {
  const f = await fakes(t, TOKEN)
  const purger = createCdnPurger(base(f.url, { provider: 'cloudflare', apiKey: 'another-token-that-is-wrong' }))
  await assert.rejects(purger.purge({ tags: ['lead-form'] }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CDN_PURGE_FAILED')
    assert.match(e.message, /cloudflare refused the purge: HTTP 403: 10000 Authentication error/)
    return true
  })
  assert.equal(f.calls.length, 1)
})

test('retries give up after the configured count with the last failure', async (t) => {
  const f = await fakes(t, TOKEN, Array.from({ length: 5 }, () => ({ status: 500, body: JSON.stringify({ msg: 'Internal error' }) })))
  await assert.rejects(createCdnPurger(base(f.url, { provider: 'fastly', apiKey: TOKEN, retries: 2 })).purge({ tags: ['x'] }),
    (e: Error) => /HTTP 500: Internal error \(after 3 attempts\)/.test(e.message))
  assert.equal(f.calls.length, 3)
})

test('the API key never appears in an error, even when the provider echoes it', async (t) => {
  const f = await fakes(t, TOKEN, [{ status: 400, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ success: false, errors: [{ code: 1012, message: `bad token Bearer ${TOKEN}` }] }) }])
  await assert.rejects(createCdnPurger(base(f.url, { provider: 'cloudflare', apiKey: TOKEN })).purge({ tags: ['x'] }), (e: Error) => {
    assert.ok(!e.message.includes(TOKEN), e.message)
    assert.match(e.message, /\[REDACTED\]/)
    return true
  })
  const cf = await fakes(t, AWS_KEY, [{ status: 400, body: `<ErrorResponse><Error><Code>InvalidArgument</Code><Message>${AWS_KEY.split(':')[1] ?? ''}</Message></Error></ErrorResponse>` }])
  await assert.rejects(createCdnPurger(base(cf.url, { provider: 'cloudfront', apiKey: AWS_KEY })).purge({ paths: ['/x'] }), (e: Error) => !e.message.includes('wJalrXUtnFEMI'))
})

test('options are validated once: provider, zone id, key shape, paths and tags', async () => {
  assert.throws(() => createCdnPurger({ provider: 'akamai' as never }), { code: 'CDN_INVALID_OPTIONS' })
  assert.throws(() => createCdnPurger({ provider: 'cloudflare', apiKey: TOKEN }), /zone id/)
  assert.throws(() => createCdnPurger({ provider: 'fastly', zoneId: ZONE }), /API key/)
  assert.throws(() => createCdnPurger({ provider: 'cloudfront', zoneId: ZONE, apiKey: 'no-colon' }), /accessKeyId:secretAccessKey/)
  assert.throws(() => createCdnPurger({ retries: -1 }), { code: 'CDN_INVALID_OPTIONS' })
  // Past what a Node timer holds, a timeout fires at once: every attempt would fail.
  assert.throws(() => createCdnPurger({ timeoutMs: 2 ** 31 }), /timeoutMs must be positive and at most 2147483647/)
  const none = createCdnPurger()
  assert.deepEqual(await none.purge({ paths: ['/index.html'] }), { provider: 'none', requests: [] })
  await assert.rejects(none.purge({ paths: ['index.html'] }), { code: 'CDN_INVALID_OPTIONS' })
  await assert.rejects(none.purge({ tags: ['has space'] }), { code: 'CDN_INVALID_OPTIONS' })
})

test('cdnPlugin decorates app.cdn and refuses bad options at registration', async () => {
  const app = Fastify()
  await app.register(cdnPlugin, { provider: 'none' })
  assert.equal(app.cdn.provider, 'none')
  await app.close()
  const bad = Fastify()
  await assert.rejects(async () => { await bad.register(cdnPlugin, { provider: 'cloudflare' }) }, { code: 'CDN_INVALID_OPTIONS' })
  await bad.close()
})

test('a deploy purges the files whose content changed or that are gone, never new ones', () => {
  assert.deepEqual(changedPaths(
    { '/index.html': 'a1', '/static/app.3f2c.js': 'b', '/old.html': 'c' },
    { '/index.html': 'a2', '/static/app.3f2c.js': 'b', '/static/app.9d1e.js': 'd' }
  ), ['/index.html', '/old.html'])
})

test('retryBaseMs spaces the retries: with the jitter at its top, the wait before the second attempt is the base', async (t) => {
  // Full jitter draws the wait in [0, base); held at its top, the wait is the base itself.
  t.mock.method(Math, 'random', () => 0.999)
  const attemptGap = async (retryBaseMs: number): Promise<number> => {
    const f = await fakes(t, TOKEN, [{ status: 503, body: 'upstream unavailable' }])
    const started = performance.now()
    const result = await createCdnPurger(base(f.url, { provider: 'fastly', apiKey: TOKEN, retryBaseMs })).purge({ tags: ['x'] })
    assert.equal(result.requests[0]?.attempts, 2)
    return performance.now() - started
  }
  const slow = await attemptGap(400)
  const fast = await attemptGap(1)
  assert.ok(slow >= 395, `retryBaseMs 400: the purge of two attempts took ${slow} ms`)
  assert.ok(fast < 300, `retryBaseMs 1: the purge of two attempts took ${fast} ms`)
})
