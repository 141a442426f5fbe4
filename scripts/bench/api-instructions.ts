import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { seed } from '../../services/domain/seed.js'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivatePostgres } from '../../test/helpers/private-postgres.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { startUnderCallgrind } from './callgrind.js'
import { countBatches, medianOf, ranBusy, ranSlowLiteralKeys, settledBatches, SLOW_LITERAL_KEYS, type CountedBatches } from './counted-batches.js'
import { startService, table } from './lib.js'
import { apiEnvironment } from './tracing-setup.js'

/**
 * The chassis's own cost on the api's hottest path, in instructions per request under callgrind (load-independent,
 * unlike req/s, with V8 on one thread: see V8_FLAGS): GET /api/v1/leads served from the cache, with an API key,
 * through the rate limiter (`--rate-limit off`: without it), tracing off (bench:tracing-instructions' configuration (a)). Beside it, under the same
 * harness, the floors: bench:cache's ceiling (a bare Fastify app sending the same bytes and headers from memory) and
 * bench:cache's alternative server (@fastify/rate-limit auto-pipelined + bentocache, `logger: false`). Each server
 * starts with counting off, is warmed (V8 is slow to deliver optimized code under valgrind), then counted over
 * `--samples` batches of `--requests` requests; each batch is printed, so a run shows whether the counts settled.
 */
const { values: args } = parseArgs({
  options: {
    // Under callgrind V8 is slow to deliver optimized code: after 4,000 requests the api without its rate limiter was
    // still compiling (its batches 354k, 266k, 160k instructions per request), after 12,000 it had settled.
    warmup: { type: 'string', default: '12000' },
    requests: { type: 'string', default: '1000' },
    samples: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '4' },
    // The shipped level (deploy/k8s/base/config.yaml) writes a line per request received and answered.
    'log-level': { type: 'string', default: 'info' },
    // The request lines the api writes at info (LOG_REQUESTS): its default, one per request, or received-and-answered.
    'log-requests': { type: 'string', default: 'answered' },
    // The api's Redis rate limiter, on as deployed; off as in bench:cache's HTTP half (which also runs the api with
    // the lookup budget, load shedding and query statistics at their defaults, here off). The alternative server
    // keeps @fastify/rate-limit either way.
    'rate-limit': { type: 'string', default: 'on' },
    // Seconds counted with no request in flight: what the process's timers cost per second, see `net`.
    idle: { type: 'string', default: '10' },
    // Which servers, by name: api, ceiling, alternative.
    only: { type: 'string', default: 'api,ceiling,alternative' },
    // Keep callgrind's dumps in this directory, for callgrind_annotate, instead of deleting them.
    keep: { type: 'string' },
    // Print each server's main-thread instructions per request by function, the N largest (JavaScript functions
    // named from V8's perf map, which this turns on for every server).
    functions: { type: 'string' }
  }
})
const functionsShown = args.functions === undefined ? 0 : Number(args.functions)
if (!['on', 'off'].includes(args['rate-limit'])) throw new Error(`--rate-limit is on or off, not ${args['rate-limit']}`)
const rateLimited = args['rate-limit'] === 'on'
const log = (m: string): void => console.log(`[bench:api-instructions] ${m}`)
const ROUTE = '/api/v1/leads'

// A PostgreSQL and a Redis of the bench's own: on shared ones, what other clients do reaches the api (a key minted
// anywhere in the database is announced to every listener) and was counted as the api's work.
const postgres = await startPrivatePostgres()
const redisServer = await startPrivateRedis()
const DATABASE_URL = postgres.url
const REDIS_URL = redisServer.url
let key: string
try {
  await migrate({ databaseUrl: DATABASE_URL, schema: 'public' })
  await seed({ databaseUrl: DATABASE_URL, schema: 'public', count: 1000, seed: 1 })
  const pool = createConnectionPool({ connectionString: DATABASE_URL, schema: 'public', min: 0, max: 1, healthCheckInterval: 0 })
  key = (await new ApiKeyStore(pool).mint('bench:api-instructions', ['leads:read']).finally(() => pool.close())).key
} catch (error) {
  postgres.destroy()
  await redisServer.destroy()
  throw error
}
const redisPrefix = (name: string): Record<string, string> => ({ CACHE_PREFIX: `${name}:c:`, RATE_LIMIT_PREFIX: `${name}:rl:` })
const apiEnv = { ...apiEnvironment, DATABASE_URL, REDIS_URL, DB_SCHEMA: 'public', QUERY_STATS_ENABLED: 'false', LOG_LEVEL: args['log-level'], LOG_REQUESTS: args['log-requests'], RATE_LIMIT_ENABLED: String(rateLimited) }

interface Target { name: string, label: string, entry: string, env: () => Promise<Record<string, string>>, preload: boolean }
// The ceiling copies the bytes and headers of an api it fetches once at start: an uncounted api of its own.
let source: Awaited<ReturnType<typeof startService>> | undefined
const targets: Target[] = [
  { name: 'api', label: rateLimited ? 'api (cache + rate limiter + API key)' : 'api (cache + API key, no rate limiter)', entry: 'dist/services/api/main.js', preload: true, env: async () => ({ ...apiEnv, ...redisPrefix('api') }) },
  {
    name: 'ceiling', label: 'ceiling (bare Fastify, bytes in memory)', entry: 'dist/scripts/bench/ceiling-server.js', preload: false,
    env: async () => {
      source ??= await startService('dist/services/api/main.js', { ...apiEnv, LOG_LEVEL: 'warn', ...redisPrefix('source') }, await freePort())
      return { BENCH_SOURCE_URL: `${source.url}${ROUTE}`, BENCH_API_KEY: key }
    }
  },
  {
    name: 'alternative', label: 'alternative (@fastify/rate-limit pipelined + bentocache)', entry: 'dist/scripts/bench/alternative-server.js', preload: false,
    env: async () => ({ DATABASE_URL, DB_SCHEMA: 'public', REDIS_URL, BENCH_KEY_LIMIT: '1000000000' })
  }
]
const chosen = targets.filter((t) => args.only.split(',').includes(t.name))

// One count per thread: the main thread's (the event loop and most of the garbage collector) is steadier than the
// whole process's, which also holds V8's background compiler and GC helpers.
const VALGRIND = ['--tool=callgrind', '--trace-children=no', '--instr-atstart=no', '--separate-threads=yes',
  // V8 writes machine code into its heap and rewrites it: valgrind must notice code changed outside the stack.
  '--smc-check=all-non-file']
const preload = ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]
// V8 compiles optimized code and collects garbage partly on helper threads, whose share of the work moves with how
// busy the machine is (the main thread's count moved by a third from run to run on a loaded machine): on one thread
// the same requests cost the same instructions whatever runs beside them.
// --perf-basic-prof writes /tmp/perf-<pid>.map, which names the JIT code callgrind shows as addresses; with
// compaction off the code stays where the map says.
const V8_FLAGS = ['--single-threaded', ...(functionsShown > 0 ? ['--perf-basic-prof', '--no-compact-code-space'] : [])]

async function startCounted (target: Target, dir: string, port: number): Promise<{ child: ChildProcess, url: string }> {
  return await startUnderCallgrind(target.label, VALGRIND, [...V8_FLAGS, ...(target.preload ? preload : []), join(projectRoot, target.entry)], await target.env(), port, dir)
}

async function drive (url: string, n: number): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Number(args.concurrency) }, async () => {
    while (next < n) {
      next++
      const res = await fetch(`${url}${ROUTE}`, { headers: { 'x-api-key': key } })
      await res.arrayBuffer()
      if (!res.ok) throw new Error(`${res.url} answered ${res.status}`)
    }
  }))
}

const counts = new Map<Target, CountedBatches>()
let current: ChildProcess | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { current?.kill('SIGKILL'); source?.child.kill('SIGKILL'); postgres.destroy(); void redisServer.destroy().finally(() => process.exit(1)) })
function dumpDirectory (keep: string | undefined): string {
  if (keep === undefined) return mkdtempSync(join(tmpdir(), 'bench-api-instructions-'))
  mkdirSync(keep, { recursive: true })
  return keep
}
const dir = dumpDirectory(args.keep)
try {
  for (const target of chosen) {
    const started = Date.now()
    const { child, url } = await startCounted(target, dir, await freePort())
    const pid = child.pid as number
    current = child
    try {
      log(`${target.label}: ready after ${((Date.now() - started) / 1000).toFixed(0)} s; ${args.warmup} warm-up requests`)
      await drive(url, Number(args.warmup))
      const counted = await countBatches({
        pid, dir, idleSeconds: Number(args.idle), samples: Number(args.samples), requests: Number(args.requests),
        drive: async (n) => { await drive(url, n) },
        functions: functionsShown > 0,
        keepPerfMap: args.keep !== undefined,
        log: (m) => { log(`${target.label}: ${m}`) }
      })
      counts.set(target, counted)
      // Every function's cost, for a look beyond the printed few.
      if (counted.byFunction !== undefined && args.keep !== undefined) writeFileSync(join(dir, `functions-${target.name}.json`), JSON.stringify(Object.fromEntries(counted.byFunction)))
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
} finally {
  await source?.stop()
  if (args.keep === undefined) rmSync(dir, { recursive: true, force: true })
  else log(`callgrind dumps kept in ${dir}`)
  postgres.destroy()
  await redisServer.destroy()
}

const api = targets[0] as Target
const of = (t: Target): number => medianOf(counts.get(t)?.net)
const ofSettled = (t: Target): number => medianOf(settledOf(t))
const settledOf = (t: Target): number[] => { const c = counts.get(t); return c === undefined ? [] : settledBatches(c) }
console.log(`\nInstructions per request (callgrind) on the main thread, median of ${args.samples} batches of ${args.requests} requests after ${args.warmup} warm-up requests, ${args.concurrency} in flight; GET ${ROUTE} (cached) with an API key, api at LOG_LEVEL=${args['log-level']} LOG_REQUESTS=${args['log-requests']}, rate limiter ${args['rate-limit']}:\n`)
console.log(table(chosen.map((t) => ({
  server: t.label,
  'instructions/request, net of the idle rate': of(t).toFixed(0),
  'share of the api': counts.has(api) && t !== api ? `${(of(t) / of(api) * 100).toFixed(0)}%` : '',
  'net of the idle rate and of optimizing compilation': ofSettled(t).toFixed(0),
  'share of the api, net of compilation': counts.has(api) && t !== api ? `${(ofSettled(t) / ofSettled(api) * 100).toFixed(0)}%` : '',
  'each batch, net': (counts.get(t)?.net ?? []).map((x) => x.toFixed(0)).join(', '),
  'each batch, net of compilation too': settledOf(t).map((x) => x.toFixed(0)).join(', '),
  'each batch, as counted': (counts.get(t)?.counted ?? []).map((x) => x.toFixed(0)).join(', ')
}))))

// A process whose batches ran V8's slow path for object literals' computed keys (counted-batches.ts) is named, so that
// a comparison is not read from it.
for (const [t, c] of counts) {
  if (ranSlowLiteralKeys(c)) console.log(`\nNote: ${t.label}'s batches spent ${c.literalKeys.map((x) => x.toFixed(0)).join(', ')} instructions a request in V8's runtime defining object literals' keys (about ${SLOW_LITERAL_KEYS.toLocaleString('en-US')} or more: process.nextTick's tick objects on V8's slow path, which perf did not find at more than 0.43% of the CPU of processes run without valgrind). Compare processes without it: run again.`)
}

// A count taken on a machine busier than its CPUs is not comparable with one taken on a quiet machine (counted-batches.ts).
for (const [t, c] of counts) {
  if (ranBusy(c)) console.log(`\nNote: ${t.label}'s batches ended at load averages ${c.load.map((x) => x.toFixed(1)).join(', ')} on ${availableParallelism()} CPUs: its counts hold the clock's work over longer batches. Run again on a quieter machine.`)
}

for (const t of chosen) {
  const costs = counts.get(t)?.byFunction
  if (costs === undefined) continue
  const top = [...costs].sort((x, y) => y[1].self - x[1].self).slice(0, functionsShown)
  console.log(`\n${t.label}: main-thread instructions per request by function, the ${functionsShown} largest by self (self: in the function, inclusive: with what it called; not net of the idle rate)\n`)
  console.log(table(top.map(([name, c]) => ({
    function: name.length > 140 ? `${name.slice(0, 137)}...` : name,
    self: c.self.toFixed(0),
    inclusive: c.inclusive.toFixed(0)
  }))))
}
