import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { RequestMetrics } from './request-metrics.js'

test('requests are counted per method, route and status, and timed per method and route, however they interleave', async () => {
  const registry = new Registry()
  const metrics = new RequestMetrics(registry, 'api')
  const calls: Array<[string, string, number, number]> = [
    ['GET', '/leads', 200, 0.0005], ['GET', '/leads/:id', 200, 0.003], ['GET', '/leads', 200, 0.2], ['PATCH', '/leads/:id', 200, 0.02],
    ['GET', '/leads/:id', 404, 0.001], ['GET', '/leads', 429, 3], ['GET', 'unmatched', 404, 0.0001], ['GET', '/leads', 200, 0.0005]
  ]
  for (const [method, route, status, seconds] of calls) metrics.record(method, route, status, seconds)
  const text = await registry.metrics()
  const value = (series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `))
    return line === undefined ? undefined : Number(line.slice(series.length + 1))
  }
  assert.equal(value('http_requests_total{method="GET",route="/leads",status="200"}'), 3)
  assert.equal(value('http_requests_total{method="GET",route="/leads",status="429"}'), 1)
  assert.equal(value('http_requests_total{method="GET",route="/leads/:id",status="200"}'), 1)
  assert.equal(value('http_requests_total{method="GET",route="/leads/:id",status="404"}'), 1)
  assert.equal(value('http_requests_total{method="PATCH",route="/leads/:id",status="200"}'), 1)
  assert.equal(value('http_requests_total{method="GET",route="unmatched",status="404"}'), 1)
  const leads = 'service="api",method="GET",route="/leads"'
  assert.equal(value(`http_request_duration_seconds_count{${leads}}`), 4)
  assert.equal(value(`http_request_duration_seconds_bucket{${leads},le="0.001"}`), 2)
  assert.equal(value(`http_request_duration_seconds_bucket{${leads},le="0.25"}`), 3)
  assert.equal(value(`http_request_duration_seconds_bucket{${leads},le="+Inf"}`), 4)
  assert.ok(Math.abs((value(`http_request_duration_seconds_sum{${leads}}`) ?? 0) - 3.201) < 1e-9)
  assert.equal(value('http_request_duration_seconds_count{service="api",method="PATCH",route="/leads/:id"}'), 1)
})
