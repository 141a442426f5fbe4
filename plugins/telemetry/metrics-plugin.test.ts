import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildService, chassisConfigFragment, composeSchema, loadConfig, type ChassisConfig } from '../chassis/index.js'
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
