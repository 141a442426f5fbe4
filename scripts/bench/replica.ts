// Read replicas under the leads API, on a primary and a streaming replica of the bench's own (pg_basebackup -R on
// free ports): (1) a read-mostly load, 9 GETs (list and by id) to 1 PATCH-then-GET-with-its-position, run with the
// replica and without it (baseline): the share of marked reads the replica served, and the statements the primary
// ran per request in each; (2) PATCH then at once a GET presenting X-Read-After-LSN, under natural replay and with
// replay delayed (recovery_min_apply_delay): the GET's extra wait (worst and median) against the same GET without a
// position. In-process (inject), the cache off so that every read reaches the pool. `npm run bench:replica`
// (PostgreSQL 15 binaries, as root or the postgres user).
import { parseArgs } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { loadApiConfig, type ApiConfig } from '../../services/api/config.js'
import { migrate } from '../../services/domain/migrate.js'
import { startStreamingReplica } from '../../test/helpers/replica.js'
import { median, table } from './lib.js'

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, iterations: { type: 'string', default: '40' }, delay: { type: 'string', default: '500' } } })
const SERVICE_KEY = 'bench-service-key-0123456789abcdefghijklmnop'
const headers = { 'x-service-key': SERVICE_KEY }

const cluster = await startStreamingReplica()
try {
  await migrate({ databaseUrl: cluster.primary.url })
  await cluster.replica.catchUp()

  const api = async (env: Record<string, string>): Promise<FastifyInstance> => buildApp(loadApiConfig({
    dotenv: false,
    env: { SERVICE_API_KEY: SERVICE_KEY, CACHE_ENABLED: 'false', RATE_LIMIT_ENABLED: 'false', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', DATABASE_URL: cluster.primary.url, DB_POOL_MIN: '2', DB_POOL_MAX: '8', LOG_LEVEL: 'silent', ...env }
  }) as ApiConfig)
  const seed = await api({})
  const ids: string[] = []
  for (let i = 0; i < 200; i++) {
    const res = await seed.inject({ method: 'POST', url: '/api/v1/leads', headers, payload: { firstName: 'Ann', lastName: 'Lee', email: `bench.${i}@example.com`, product: 'auto', state: 'CA' } })
    ids.push(res.json().id)
  }
  await seed.close()
  await cluster.replica.catchUp()
  const primaryStatements = async (): Promise<number> => Number((await cluster.primary.sql<{ n: string }>("SELECT sum(xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = 'postgres'"))[0]?.n)

  // (1) Read-mostly load, with and without the replica.
  const readMostly = async (env: Record<string, string>): Promise<Record<string, string | number>> => {
    const app = await api(env)
    const before = await primaryStatements()
    let requests = 0
    let failed = 0
    const until = performance.now() + Number(args.seconds) * 1000
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; performance.now() < until; i++) {
        const id = ids[(w * 31 + i) % ids.length] as string
        if (i % 10 === 9) {
          const patch = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers, payload: { score: i % 100 } })
          const res = await app.inject({ url: `/api/v1/leads/${id}`, headers: { ...headers, 'x-read-after-lsn': String(patch.headers['x-read-after-lsn'] ?? '') } })
          requests += 2
          if (patch.statusCode !== 200 || res.statusCode !== 200) failed++
        } else {
          const res = await app.inject({ url: i % 2 === 0 ? `/api/v1/leads/${id}` : '/api/v1/leads?limit=20', headers })
          requests++
          if (res.statusCode !== 200) failed++
        }
      }
    }
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)))
    const onPrimary = (await primaryStatements()) - before
    const reads = app.db.getMetrics().replicas?.reads ?? []
    await app.close()
    const marked = reads.reduce((n, r) => n + r.count, 0)
    const onReplica = reads.filter((r) => r.target === 'replica').reduce((n, r) => n + r.count, 0)
    return {
      setup: env.DATABASE_REPLICA_URLS ? 'primary + replica' : 'primary only (baseline)',
      'requests/s': Math.round(requests / Number(args.seconds)),
      failed,
      'marked reads on the replica': marked > 0 ? `${(100 * onReplica / marked).toFixed(1)}%` : '-',
      'primary transactions per request': (onPrimary / requests).toFixed(2),
      reasons: reads.map((r) => `${r.target}:${r.reason}=${r.count}`).join(' ') || '-'
    }
  }
  const withReplica = { DATABASE_REPLICA_URLS: cluster.replica.url, DB_REPLICA_WAIT_MS: '2000' }
  const loads = [await readMostly({}), await readMostly(withReplica)]
  console.log(`\n(1) read-mostly load: 8 clients for ${args.seconds} s, 9 GETs to 1 PATCH + GET with its position\n`)
  console.log(table(loads))
  const [base, replicated] = loads.map((l) => Number(l['primary transactions per request']))
  console.log(`\nprimary transactions per request, replica over baseline: ${((replicated as number) / (base as number)).toFixed(2)}`)

  // (2) Read-your-writes wait.
  const wait = async (delayMs: number): Promise<Record<string, string | number>> => {
    await cluster.replica.setApplyDelay(delayMs)
    const app = await api(withReplica)
    const waited: number[] = []
    const plain: number[] = []
    let stale = 0
    for (let i = 0; i < Number(args.iterations); i++) {
      const id = ids[i % ids.length] as string
      const patch = await app.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers, payload: { firstName: `Ann${i}` } })
      let started = performance.now()
      const res = await app.inject({ url: `/api/v1/leads/${id}`, headers: { ...headers, 'x-read-after-lsn': String(patch.headers['x-read-after-lsn']) } })
      waited.push(performance.now() - started)
      if (patch.statusCode !== 200 || res.json().firstName !== `Ann${i}`) stale++
      started = performance.now()
      await app.inject({ url: `/api/v1/leads/${id}`, headers })
      plain.push(performance.now() - started)
    }
    const reads = app.db.getMetrics().replicas?.reads ?? []
    await app.close()
    await cluster.replica.setApplyDelay(0)
    await cluster.replica.catchUp()
    return {
      replay: delayMs > 0 ? `delayed ${delayMs} ms` : 'natural',
      'GET after PATCH: worst ms': Math.max(...waited).toFixed(1),
      'median ms': median(waited).toFixed(1),
      'GET without position: median ms': median(plain).toFixed(1),
      stale,
      reasons: reads.map((r) => `${r.target}:${r.reason}=${r.count}`).join(' ')
    }
  }
  const waits = [await wait(0), await wait(Number(args.delay))]
  console.log(`\n(2) PATCH then at once GET with X-Read-After-LSN, ${args.iterations} times (DB_REPLICA_WAIT_MS=2000)\n`)
  console.log(table(waits))
} finally {
  cluster.destroy()
}
