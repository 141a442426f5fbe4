import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { buildApp } from '../../services/api/app.js'
import { SERVICE_HEADERS, createTestSchema, testApiConfig, uniqueName } from '../helpers/database.js'
import { startOrchestrator } from '../helpers/services.js'
import { PROMETHEUS_DIR, loadRuleGroups, metricNames, promtool } from '../helpers/prometheus.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML

const groups = loadRuleGroups()
const rules = groups.flatMap((g) => g.rules)

test('promtool check rules passes on the shipped rules', () => {
  const r = promtool('check', 'rules', 'rules.yml')
  assert.ok(r.ok, r.output)
  assert.match(r.output, new RegExp(`SUCCESS: ${rules.length} rules found`))
})

test('promtool test rules: every alert fires on its synthetic series and stays silent where it should', () => {
  const r = promtool('test', 'rules', 'rules.test.yml')
  assert.ok(r.ok, r.output)
  assert.match(r.output, /SUCCESS/)
})

test('each alert the operator needs exists, and has a case that fires it and one that does not', () => {
  const alerts = rules.filter((r) => r.alert).map((r) => r.alert)
  assert.deepEqual(alerts.sort(), ['CacheHitRateLow', 'CacheInvalidationsPending', 'CircuitBreakerOpen', 'DbPoolClientsWaiting', 'DbPoolSaturated', 'RateLimitedShareHigh',
    'RateLimiterFallback', 'ReplicaLagHigh', 'RouteLatencyP99High', 'RoutingEventsNotShared', 'ServerErrorShareHigh'])
  const blocks = (parse(readFileSync(join(PROMETHEUS_DIR, 'rules.test.yml'), 'utf8')) as Obj).tests as Obj[]
  for (const alert of alerts) {
    const own = blocks.flatMap((b) => (b.alert_rule_test ?? []).filter((c: Obj) => c.alertname === alert).map((c: Obj) => ({ c, series: b.input_series.length })))
    assert.ok(own.some(({ c }) => c.exp_alerts.length > 0), `${alert}: a case where it fires`)
    // promtool compares the whole list of firing alerts: a case with more input series than expected alerts, or an
    // empty list, proves the alert silent on the others.
    assert.ok(own.some(({ c, series }) => c.exp_alerts.length === 0 || series > c.exp_alerts.length), `${alert}: a case where it stays silent`)
  }
  for (const r of rules) {
    assert.ok(r.alert === undefined || (r.labels?.severity && r.annotations?.summary && r.annotations.description), `${r.alert}: severity, summary, description`)
  }
  // Every recording rule is used: by an alert, or by the HPA through prometheus-adapter.
  const exprs = rules.map((r) => r.expr).join('\n')
  const adapter = readFileSync(join(PROMETHEUS_DIR, '..', 'k8s', 'monitoring', 'prometheus-adapter.yaml'), 'utf8')
  for (const r of rules.filter((x) => x.record)) assert.ok(exprs.includes(`${r.record} `) || adapter.includes(r.record ?? ''), `${r.record} is used`)
})

test('the metric names the rules read are the ones the services export', () => {
  const recorded = new Set(rules.map((r) => r.record).filter(Boolean))
  const read = new Set(rules.flatMap((r) => metricNames(r.expr)).filter((n) => !recorded.has(n)))
  assert.deepEqual([...read].sort(), ['cache_invalidations_pending', 'cache_operations', 'circuit_breaker_open', 'db_pool_connections', 'db_pool_max_connections', 'db_replica_lag_seconds',
    'http_request_duration_seconds_bucket', 'http_requests_total', 'orchestrator_events_total', 'rate_limit_decisions'])
  // The extraction itself: matchers, grouping and functions are not names.
  assert.deepEqual(metricNames('sum by (service, le) (rate(a_total{x="b{c}"}[5m])) / on (pod) b:c:d > 0'), ['a_total', 'b:c:d'])
})

test('the pool limit, an open breaker and pending cache invalidations are in /metrics, as the saturation, breaker and invalidation alerts read them', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('rules')}:`, RATE_LIMIT_PREFIX: `${uniqueName('rules-rl')}:`, DB_POOL_MAX: '7', RATE_LIMIT_ENABLED: 'true' }
  const api = await buildApp(testApiConfig(db, env))
  t.after(() => api.close())
  await api.inject({ url: '/api/v1/leads?limit=1', headers: SERVICE_HEADERS })
  const apiMetrics = (await api.inject('/metrics')).body
  assert.match(apiMetrics, /^db_pool_max_connections\{service="api"\} 7$/m)
  assert.match(apiMetrics, /^circuit_breaker_open\{breaker="cache_redis",service="api"\} 0$/m)
  assert.match(apiMetrics, /^cache_invalidations_pending\{service="api"\} 0$/m)
  assert.match(apiMetrics, /^circuit_breaker_open\{breaker="rate_limit_store",service="api"\} 0$/m)
  // The orchestrator's client of a data-service that is not there opens its breaker after one failed call.
  const { app: orchestrator } = await startOrchestrator(t, db, 'http://127.0.0.1:9', { ...env, DATA_SERVICE_RETRIES: '0', DATA_SERVICE_BREAKER_THRESHOLD: '1', DATA_SERVICE_BREAKER_COOLDOWN_MS: '60000' })
  assert.match((await orchestrator.inject('/metrics')).body, /^circuit_breaker_open\{breaker="service:data-service",service="orchestrator"\} 0$/m)
  const res = await orchestrator.inject({ url: '/orchestrator/v1/leads/00000000-0000-4000-8000-000000000000/score', headers: SERVICE_HEADERS })
  assert.equal(res.statusCode, 503)
  assert.match((await orchestrator.inject('/metrics')).body, /^circuit_breaker_open\{breaker="service:data-service",service="orchestrator"\} 1$/m)
})
