import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tracingChannel } from 'node:diagnostics_channel'
import { buildApp } from './app.js'
import { QUERY_CHANNEL_NAME } from '@lead-chassis/plugins/db-pool'
import { queryStatistics } from '@lead-chassis/plugins/telemetry'
import { SERVICE_HEADERS, createTestSchema, testApiConfig } from '../../test/helpers/database.js'

const seam = tracingChannel(QUERY_CHANNEL_NAME)

test('QUERY_STATS_ENABLED=false removes the query seam subscriber', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  assert.equal(seam.hasSubscribers, false, 'nothing else in this process listens to the seam')
  const off = await buildApp(testApiConfig(db, { QUERY_STATS_ENABLED: 'false' }))
  t.after(() => off.close())
  assert.equal(seam.hasSubscribers, false)
  const before = queryStatistics.getSummary().totalQueries
  assert.equal((await off.inject({ url: '/api/v1/leads', headers: SERVICE_HEADERS })).statusCode, 200)
  assert.equal(queryStatistics.getSummary().totalQueries, before, 'no query is measured')
  await off.close()

  const on = await buildApp(testApiConfig(db, { QUERY_STATS_ENABLED: 'true' }))
  t.after(() => on.close())
  assert.equal(seam.hasSubscribers, true)
  assert.equal((await on.inject({ url: '/api/v1/leads', headers: SERVICE_HEADERS })).statusCode, 200)
  assert.ok(queryStatistics.getSummary().totalQueries > before, 'queries are measured')
  await on.close()
  assert.equal(seam.hasSubscribers, false, 'closing the app releases the subscriber')
})

test('queryStatistics.getSummary() counts the queries of a running service, as the admin route does', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  const before = queryStatistics.getSummary().totalQueries
  assert.equal((await app.inject({ url: '/api/v1/leads?status=new', headers: SERVICE_HEADERS })).statusCode, 200)
  const summary = queryStatistics.getSummary()
  assert.ok(summary.totalQueries > before)
  const admin = await app.inject({ url: '/api/v1/admin/queries', headers: SERVICE_HEADERS })
  assert.equal(admin.statusCode, 200)
  assert.ok(admin.json().summary.totalQueries >= summary.totalQueries, 'the admin route reads the same statistics')
  assert.equal(app.queries, queryStatistics)
})

test('SLOW_QUERY_THRESHOLD_MS lists a query slower than it as slow', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db, { SLOW_QUERY_THRESHOLD_MS: '50' }))
  t.after(() => app.close())
  assert.equal(queryStatistics.slowThresholdMs, 50)
  await app.db.query('SELECT pg_sleep(0.1) AS slow_query_threshold_probe')
  assert.ok(queryStatistics.getSlowQueries(100).some((s) => s.query.includes('slow_query_threshold_probe') && s.durationMs >= 50))
})
