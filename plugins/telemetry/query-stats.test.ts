import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { createConnectionPool } from '../db-pool/index.js'
import { QueryStatistics, QueryTracking, queryStatistics } from './query-stats.js'
import { loadQueryParser } from './query-normalizer.js'
import { queryStatsPlugin } from './query-stats-plugin.js'
import { trackQueries } from './query-tracking.js'
import { TEST_DATABASE_URL, uniqueName } from '../../test/helpers/database.js'

before(() => loadQueryParser())

test('statistics per fingerprint: count, total, min, max, percentiles, rows, errors; memory bounded', () => {
  const q = new QueryStatistics({ slowThresholdMs: 50, maxFingerprints: 3 })
  for (let i = 1; i <= 100; i++) q.record({ sql: `SELECT * FROM leads WHERE id = ${i}`, durationMs: i, rows: 1 })
  q.record({ sql: 'SELECT * FROM leads WHERE id = 0', durationMs: 1, error: true })
  const [stat] = q.getQueryStats(1)
  assert.equal(stat?.count, 101)
  assert.equal(stat?.maxMs, 100)
  assert.equal(stat?.minMs, 1)
  assert.equal(stat?.rows, 100)
  assert.equal(stat?.errors, 1)
  assert.ok((stat?.p50Ms ?? 0) >= 49 && (stat?.p50Ms ?? 0) <= 52)
  assert.ok((stat?.p99Ms ?? 0) >= 99)
  assert.equal(stat?.query, 'SELECT * FROM leads WHERE id = $1')
  for (const t of ['a', 'b', 'c', 'd']) q.record({ sql: `SELECT * FROM ${t}`, durationMs: 1 })
  assert.equal(q.getSummary().fingerprints, 3, 'the least used fingerprints are dropped')
  const summary = q.getSummary()
  assert.equal(summary.totalQueries, 105)
  assert.equal(summary.slowQueriesCount, 51)
  assert.equal(summary.maxQueryDuration, 100)
  assert.equal(q.getSlowQueries(2)[0]?.durationMs, 100)
})

test('every query through the pool is measured via the seam; slow ones are reported with normalized text only', async (t) => {
  const slow: unknown[] = []
  const q = new QueryStatistics({ slowThresholdMs: 150 })
  q.onSlowQuery((s) => slow.push(s))
  const stop = trackQueries({ statistics: q, traceId: () => 'trace-123' })
  t.after(stop)
  const pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, name: uniqueName('qt'), min: 0, max: 2, healthCheckInterval: 0 })
  t.after(() => pool.close())
  await pool.query("SELECT $1::text AS email, 'literal@example.com' AS other", ['ann@example.com'])
  await pool.query('SELECT pg_sleep(0.2)')
  await assert.rejects(pool.query('SELECT * FROM missing_table_xyz'))
  const stats = q.getQueryStats(10)
  assert.ok(stats.some((s) => s.query === 'SELECT $1::text AS email, $2 AS other' && s.rows === 1))
  assert.ok(stats.some((s) => s.query.includes('missing_table_xyz') && s.errors === 1))
  assert.equal(slow.length, 1)
  assert.deepEqual(Object.keys(slow[0] as object).sort(), ['at', 'durationMs', 'fingerprint', 'query', 'traceId'])
  assert.equal((slow[0] as { traceId: string }).traceId, 'trace-123')
  assert.doesNotMatch(JSON.stringify(q.getQueryStats(10)), /example\.com/)
})

test('@QueryTracking times repository methods under their name', async () => {
  const q = new QueryStatistics()
  class LeadRepository {
    @QueryTracking('LeadRepository', q)
    async findLeads (fail: boolean) {
      if (fail) throw new Error('x')
      return [1]
    }
  }
  const repo = new LeadRepository()
  await repo.findLeads(false)
  await assert.rejects(repo.findLeads(true))
  const [stat] = q.getQueryStats(1)
  assert.equal(stat?.query, 'LeadRepository.findLeads')
  assert.equal(stat?.count, 2)
  assert.equal(stat?.errors, 1)
})

test('@QueryTracking records into the process query statistics by default', async () => {
  const label = `Repository${process.pid}.find`
  class Repository {
    @QueryTracking(`Repository${process.pid}`)
    async find () { return 1 }
  }
  await new Repository().find()
  assert.equal(queryStatistics.getQueryStats(1000).find((s) => s.query === label)?.count, 1)
})

test('two trackers of the same statistics count each query once', async (t) => {
  const q = new QueryStatistics()
  const stopFirst = trackQueries({ statistics: q })
  const stopSecond = trackQueries({ statistics: q })
  t.after(() => { stopFirst(); stopSecond() })
  const pool = createConnectionPool({ connectionString: TEST_DATABASE_URL, name: uniqueName('qt'), min: 0, max: 1, healthCheckInterval: 0 })
  t.after(() => pool.close())
  await pool.query('SELECT 1')
  assert.equal(q.getSummary().totalQueries, 1)
  stopFirst()
  await pool.query('SELECT 1')
  assert.equal(q.getSummary().totalQueries, 2, 'still tracked while one user remains')
  stopSecond()
  await pool.query('SELECT 1')
  assert.equal(q.getSummary().totalQueries, 2, 'no longer tracked once every user released it')
})

test('invalid query statistics options throw one coded error naming each problem', () => {
  assert.throws(() => new QueryStatistics({ slowThresholdMs: 0, maxFingerprints: -1, samplesPerFingerprint: 1.5 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'QUERY_STATS_INVALID_OPTIONS')
    assert.match(e.message, /slowThresholdMs must be a positive number/)
    assert.match(e.message, /maxFingerprints must be a positive integer/)
    assert.match(e.message, /samplesPerFingerprint must be a positive integer/)
    return true
  })
  const q = new QueryStatistics()
  assert.throws(() => { q.slowThresholdMs = -5 }, { code: 'QUERY_STATS_INVALID_OPTIONS' })
  assert.equal(q.slowThresholdMs, 1000)
})

test('a second app asking for another slow-query threshold on the same statistics is refused, not silently changing the first one\'s', async (t) => {
  const statistics = new QueryStatistics()
  const first = Fastify()
  t.after(() => first.close())
  await first.register(queryStatsPlugin, { statistics, slowThresholdMs: 50, enabled: false })
  await first.ready()

  const second = Fastify()
  t.after(() => second.close())
  await assert.rejects(async () => {
    await second.register(queryStatsPlugin, { statistics, slowThresholdMs: 80, enabled: false })
  }, (e: Error & { code: string }) => e.code === 'QUERY_STATS_INVALID_OPTIONS' && /slowThresholdMs 80 conflicts with 50/.test(e.message))
  assert.equal(statistics.slowThresholdMs, 50)

  // The same threshold is shared; once every app holding it has closed, another may be set.
  const same = Fastify()
  await same.register(queryStatsPlugin, { statistics, slowThresholdMs: 50, enabled: false })
  await same.ready()
  await first.close()
  await same.close()
  const later = Fastify()
  t.after(() => later.close())
  await later.register(queryStatsPlugin, { statistics, slowThresholdMs: 80, enabled: false })
  await later.ready()
  assert.equal(statistics.slowThresholdMs, 80)
})

test('the slow-query threshold is held from ready: two apps registered before either is ready cannot both hold theirs, and a registration that failed holds none', async (t) => {
  const statistics = new QueryStatistics()
  const first = Fastify()
  const second = Fastify()
  t.after(() => Promise.all([first.close(), second.close()]))
  await first.register(queryStatsPlugin, { statistics, slowThresholdMs: 50, enabled: false })
  await second.register(queryStatsPlugin, { statistics, slowThresholdMs: 80, enabled: false })
  await first.ready()
  await assert.rejects(async () => { await second.ready() }, (e: Error & { code: string }) => e.code === 'QUERY_STATS_INVALID_OPTIONS' && /conflicts with 50/.test(e.message))
  assert.equal(statistics.slowThresholdMs, 50)

  const own = new QueryStatistics()
  const failed = Fastify()
  await failed.register(queryStatsPlugin, { statistics: own, slowThresholdMs: 50, enabled: false })
  await assert.rejects(async () => { await failed.register(async () => { throw new Error('a later plugin fails to boot') }) }, /fails to boot/)
  const next = Fastify()
  t.after(() => next.close())
  await next.register(queryStatsPlugin, { statistics: own, slowThresholdMs: 80, enabled: false })
  await next.ready()
  assert.equal(own.slowThresholdMs, 80)
})
