import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from './app.js'
import { SERVICE_HEADERS, createTestSchema, testApiConfig } from '../../test/helpers/database.js'

const LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|[Nn]a[Nn]|[+-]Inf)$/i

function parse (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue
    assert.match(line, LINE, `not Prometheus exposition format: ${line}`)
    const i = line.lastIndexOf(' ')
    samples.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return samples
}

test('GET /metrics: Prometheus text with request counters by route pattern, pool, cache and process metrics', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('A', 'B', 'a@b.co', 'auto', 'CA') RETURNING id")
  const before = parse((await app.inject('/metrics')).body)
  for (let i = 0; i < 3; i++) await app.inject({ url: `/api/v1/leads/${lead?.id}`, headers: SERVICE_HEADERS })
  await app.inject({ url: '/api/v1/leads/00000000-0000-4000-8000-000000000000', headers: SERVICE_HEADERS })
  const res = await app.inject('/metrics')
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /text\/plain/)
  const after = parse(res.body)
  const key = (status: number) => `http_requests_total{method="GET",route="/api/v1/leads/:id",status="${status}",service="api"}`
  assert.equal((after.get(key(200)) ?? 0) - (before.get(key(200)) ?? 0), 3)
  assert.equal(after.get(key(404)), 1)
  assert.ok(![...after.keys()].some((k) => k.includes(lead?.id as string)), 'raw URLs never become labels')
  assert.ok((after.get('http_request_duration_seconds_count{service="api",method="GET",route="/api/v1/leads/:id"}') ?? 0) >= 4)
  // The histogram's buckets are cumulative and end at +Inf, which equals the count.
  const buckets = [...after.entries()].filter(([k]) => k.startsWith('http_request_duration_seconds_bucket{service="api",method="GET",route="/api/v1/leads/:id"'))
  assert.equal(buckets.length, 12)
  for (let i = 1; i < buckets.length; i++) assert.ok((buckets[i]?.[1] ?? 0) >= (buckets[i - 1]?.[1] ?? 0), 'cumulative')
  assert.equal(buckets.at(-1)?.[0].includes('le="+Inf"'), true)
  assert.equal(buckets.at(-1)?.[1], after.get('http_request_duration_seconds_count{service="api",method="GET",route="/api/v1/leads/:id"}'))
  assert.ok((after.get('db_pool_connections{state="total",service="api"}') ?? 0) >= 1)
  assert.ok((after.get('cache_operations{tier="local",outcome="hit",service="api"}') ?? 0) >= 2)
  assert.ok(after.has('process_cpu_user_seconds_total{service="api"}'))
})
