import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildService, chassisConfigFragment, composeSchema, loadConfig, type ChassisConfig } from '../chassis/index.js'
import { cachePlugin, createCacheManager } from '../cache/index.js'
import { createRedisClient } from '../redis/index.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { eventually } from '../../test/helpers/eventually.js'
import { metricsPlugin } from './metrics-plugin.js'

function samples (text: string): Map<string, number> {
  const found = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    found.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return found
}

test('a URL the router refuses is counted in http_requests_total with a bounded route label', async (t) => {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  const app = await buildService({
    name: 'metrics-test',
    config,
    plugins: [(a) => a.register(metricsPlugin, { service: 'mt' })],
    routes: [(a) => { a.get('/own/:id', async () => ({ ok: true })) }]
  })
  t.after(() => app.close())
  const long = 'q'.repeat(101)
  for (const url of ['/own/%zz', '/own/%C0%AF?x=1', `/own/${long}`, '/missing']) await app.inject(url)
  await app.inject({ method: 'POST', url: '/own/%zz' })
  const scraped = samples((await app.inject('/metrics')).body)
  const count = (method: string, status: number): number | undefined => scraped.get(`http_requests_total{method="${method}",route="unmatched",status="${status}",service="mt"}`)
  assert.deepEqual([count('GET', 400), count('GET', 414), count('GET', 404), count('POST', 400)], [2, 1, 1, 1])
  assert.equal(scraped.get('http_request_duration_seconds_count{service="mt",method="GET",route="unmatched"}'), 4)
  const routes = new Set([...scraped.keys()].filter((k) => k.startsWith('http_requests_total')).map((k) => /route="([^"]*)"/.exec(k)?.[1]))
  assert.deepEqual([...routes], ['unmatched'], 'every refused URL under the one label unmatched requests have')
  assert.ok(![...scraped.keys()].some((k) => k.includes('%') || k.includes(long) || k.includes('refused')), 'no raw URL becomes a label')
})

test('an invalidation Redis refuses shows in /metrics as cache_invalidations_pending and invalidation_refused until Redis takes it, with no key in a label', async (t) => {
  const redis = await startPrivateRedis()
  const admin = createRedisClient({ url: redis.url })
  const client = createRedisClient({ url: redis.url })
  const cache = createCacheManager(client, { prefix: 'metrics:', hotKeysMax: 0, breakerThreshold: 1e9 })
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  const app = await buildService({ name: 'metrics-cache', config, plugins: [(a) => a.register(metricsPlugin, { service: 'mc' }), (a) => a.register(cachePlugin, { manager: cache })] })
  t.after(async () => {
    await app.close()
    await cache.close()
    await Promise.all([admin, client].map(async (c) => { await c.quit() }))
    await redis.destroy()
  })
  assert.ok(await cache.ready())
  const scrape = async (): Promise<Map<string, number>> => samples((await app.inject('/metrics')).body)
  const pending = 'cache_invalidations_pending{service="mc"}'
  const refused = 'cache_operations{tier="redis",outcome="invalidation_refused",service="mc"}'
  await cache.set('lead:5b1e', 'old')
  assert.deepEqual([(await scrape()).get(pending), (await scrape()).get(refused)], [0, 0])

  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  await admin.config('SET', 'maxmemory', '1')
  await cache.del('lead:5b1e')
  await eventually(() => cache.getStats().invalidations.refused >= 2, 'a retry refused')
  const stuck = await scrape()
  assert.equal(stuck.get(pending), 1)
  assert.ok((stuck.get(refused) ?? 0) >= 2)
  assert.ok(![...stuck.keys()].some((k) => k.includes('5b1e')), 'no key becomes a label')

  await admin.config('SET', 'maxmemory', '0')
  await eventually(async () => (await scrape()).get(pending) === 0, 'the gauge falls to zero once Redis takes it')
})

test('the metrics plugin\'s path option serves the exposition there, and nothing at /metrics', async (t) => {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent' }, dotenv: false })
  const app = await buildService({ name: 'metrics-path-test', config, plugins: [(a) => a.register(metricsPlugin, { service: 'mp', path: '/internal/prometheus' })] })
  t.after(() => app.close())
  const served = await app.inject('/internal/prometheus')
  assert.equal(served.statusCode, 200)
  assert.match(served.headers['content-type'] as string, /^text\/plain/)
  assert.match(served.body, /^# HELP http_requests_total /m)
  assert.equal((await app.inject('/metrics')).statusCode, 404)
})
