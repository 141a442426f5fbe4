import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { seed } from '../../services/domain/seed.js'

// What bench:tracing and bench:tracing-instructions share: the schema, the leads, the key, the api's environment and
// the four configurations, so that the two measure the same thing.
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_tracing'
const HOT_LEADS = 200

/** Migrates and seeds the schema (10,000 leads, once) and mints a key that reads leads and the query statistics. */
export async function prepareTracingBench (keyName: string, databaseUrl = DATABASE_URL): Promise<{ ids: string[], key: string }> {
  await migrate({ databaseUrl, schema: SCHEMA })
  const pool = createConnectionPool({ connectionString: databaseUrl, schema: SCHEMA, min: 0, max: 1, healthCheckInterval: 0 })
  try {
    const { rows: [count] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
    if ((count?.n ?? 0) < 10000) await seed({ databaseUrl, schema: SCHEMA, count: 10000 - (count?.n ?? 0) })
    const { rows: hot } = await pool.query<{ id: string }>(`SELECT id FROM leads ORDER BY id LIMIT ${HOT_LEADS}`)
    // One key reads leads and the admin view of the query statistics, which tells whether statistics ran.
    const { key } = await new ApiKeyStore(pool).mint(keyName, ['leads:read', 'admin'])
    return { ids: hot.map((r) => r.id), key }
  } finally {
    await pool.close()
  }
}

// The api as it runs in production: the cache and the rate limiter on Redis, PostgreSQL behind them. The limits are
// raised so that the load generator, one caller, is never refused; load shedding is off so that no request is.
export const apiEnvironment = {
  DATABASE_URL,
  DB_SCHEMA: SCHEMA,
  REDIS_URL,
  CACHE_ENABLED: 'true',
  RATE_LIMIT_ENABLED: 'true',
  RATE_LIMIT_MAX_REQUESTS: '1000000000',
  RATE_LIMIT_API_KEY_MAX_REQUESTS: '1000000000',
  API_KEY_LOOKUP_LIMIT: '0',
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
  // As deploy/k8s/base/config.yaml: a log line per request received and answered, which tracing may annotate.
  LOG_LEVEL: 'info',
  OTEL_SERVICE_NAME: 'api'
}

// What deploy/k8s/base/config.yaml ships.
const SHIPPED_SAMPLER = { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }
export const ALL_SAMPLED = { OTEL_TRACES_SAMPLER: 'always_on' }

/** `optional`: run only when named (`--only`), not in a benchmark's default set. */
export interface TracingConfig { letter: string, label: string, env: Record<string, string>, traced: boolean, statistics: boolean, optional?: boolean }
export const tracingConfigs: TracingConfig[] = [
  { letter: 'a', label: '(a) tracing off, query statistics off', env: { QUERY_STATS_ENABLED: 'false' }, traced: false, statistics: false },
  { letter: 'b', label: '(b) query statistics only', env: { QUERY_STATS_ENABLED: 'true' }, traced: false, statistics: true },
  { letter: 'c', label: '(c) tracing 10% parent-based (shipped) + statistics', env: { QUERY_STATS_ENABLED: 'true', ...SHIPPED_SAMPLER }, traced: true, statistics: true },
  { letter: 'd', label: '(d) tracing 100% + statistics', env: { QUERY_STATS_ENABLED: 'true', ...ALL_SAMPLED }, traced: true, statistics: true },
  // What (c) pays before it samples anything: every request takes (c)'s path for the nine traces in ten its sampler
  // declines (the trace's ids and flags in a context, no span). Against (b) it is the fixed part of (c)'s cost; (c)
  // against it, the part its sampled tenth adds.
  { letter: 'e', label: '(e) tracing on, nothing sampled (parentbased_always_off) + statistics', env: { QUERY_STATS_ENABLED: 'true', OTEL_TRACES_SAMPLER: 'parentbased_always_off' }, traced: true, statistics: true, optional: true }
]

/** The path of request `i` of the tracing benches: a cached lead and a lead's activities (PostgreSQL) in turn. */
export const tracingPath = (ids: string[], i: number): string => {
  const id = ids[(i >> 1) % ids.length] as string
  return i % 2 === 0 ? `/api/v1/leads/${id}` : `/api/v1/leads/${id}/activities?limit=5`
}

/**
 * Sends `n` of the tracing benches' requests to `url`, `concurrency` at a time, numbered on from `from.sent` (which
 * it advances), and fails on any answer that is not 2xx.
 */
export async function driveTracingRequests (url: string, ids: string[], key: string, n: number, concurrency: number, from: { sent: number }): Promise<void> {
  const end = from.sent + n
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (from.sent < end) {
      const res = await fetch(`${url}${tracingPath(ids, from.sent++)}`, { headers: { 'x-api-key': key } })
      await res.arrayBuffer()
      if (!res.ok) throw new Error(`${res.url} answered ${res.status}`)
    }
  }))
}
