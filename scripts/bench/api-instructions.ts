import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { median, startService, table } from './lib.js'
import { apiEnvironment, prepareTracingBench, REDIS_URL } from './tracing-setup.js'

/**
 * The chassis's own cost on the api's hottest path, in instructions per request of the main thread under callgrind
 * (load-independent, unlike req/s): GET /api/v1/leads served from the cache, with an API key, through the rate
 * limiter, tracing off (bench:tracing-instructions' configuration (a)). Beside it, under the same harness, the
 * floors: bench:cache's ceiling (a bare Fastify app sending the same bytes and headers from memory) and
 * bench:cache's alternative server (@fastify/rate-limit auto-pipelined + bentocache, `logger: false`). Each server
 * starts with counting off, is warmed (V8 is slow to deliver optimized code under valgrind), then counted over
 * `--samples` batches of `--requests` requests; each batch is printed, so a run shows whether the counts settled.
 */
const { values: args } = parseArgs({
  options: {
    warmup: { type: 'string', default: '3000' },
    requests: { type: 'string', default: '500' },
    samples: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '4' },
    // The shipped level (deploy/k8s/base/config.yaml) writes a line per request received and answered.
    'log-level': { type: 'string', default: 'info' },
    // Which servers, by name: api, ceiling, alternative.
    only: { type: 'string', default: 'api,ceiling,alternative' }
  }
})
const TAG = `bench-api-instructions-${process.pid}`
const log = (m: string): void => console.log(`[bench:api-instructions] ${m}`)
const ROUTE = '/api/v1/leads'

const { key } = await prepareTracingBench('bench:api-instructions')
const redisPrefix = (name: string): Record<string, string> => ({ CACHE_PREFIX: `${TAG}:${name}:c:`, RATE_LIMIT_PREFIX: `${TAG}:${name}:rl:` })
const apiEnv = { ...apiEnvironment, QUERY_STATS_ENABLED: 'false', LOG_LEVEL: args['log-level'] }

interface Target { name: string, label: string, entry: string, env: () => Promise<Record<string, string>>, preload: boolean }
// The ceiling copies the bytes and headers of an api it fetches once at start: an uncounted api of its own.
let source: Awaited<ReturnType<typeof startService>> | undefined
const targets: Target[] = [
  { name: 'api', label: 'api (cache + rate limiter + API key)', entry: 'dist/services/api/main.js', preload: true, env: async () => ({ ...apiEnv, ...redisPrefix('api') }) },
  {
    name: 'ceiling', label: 'ceiling (bare Fastify, bytes in memory)', entry: 'dist/scripts/bench/ceiling-server.js', preload: false,
    env: async () => {
      source ??= await startService('dist/services/api/main.js', { ...apiEnv, LOG_LEVEL: 'warn', ...redisPrefix('source') }, await freePort())
      return { BENCH_SOURCE_URL: `${source.url}${ROUTE}`, BENCH_API_KEY: key }
    }
  },
  {
    name: 'alternative', label: 'alternative (@fastify/rate-limit pipelined + bentocache)', entry: 'dist/scripts/bench/alternative-server.js', preload: false,
    env: async () => ({ DATABASE_URL: apiEnv.DATABASE_URL, DB_SCHEMA: apiEnv.DB_SCHEMA, REDIS_URL, BENCH_KEY_LIMIT: '1000000000' })
  }
]
const chosen = targets.filter((t) => args.only.split(',').includes(t.name))

// One count per thread: the main thread's (the event loop and most of the garbage collector) is steadier than the
// whole process's, which also holds V8's background compiler and GC helpers.
const VALGRIND = ['--tool=callgrind', '--trace-children=no', '--instr-atstart=no', '--separate-threads=yes',
  // V8 writes machine code into its heap and rewrites it: valgrind must notice code changed outside the stack.
  '--smc-check=all-non-file']
const preload = ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]

async function startCounted (target: Target, dir: string, port: number): Promise<{ child: ChildProcess, url: string }> {
  const env = { PATH: process.env.PATH ?? '', PORT: String(port), ...await target.env() }
  const child = spawn('valgrind', [...VALGRIND, `--callgrind-out-file=${join(dir, 'cg.%p')}`, process.execPath, ...(target.preload ? preload : []), join(projectRoot, target.entry)], { cwd: projectRoot, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${target.label}: exited with ${child.exitCode}\n${stderr}`)
    if (await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)) break
    if (i > 1200) throw new Error(`${target.label}: not ready after 10 minutes`)
    await sleep(500)
  }
  return { child, url }
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

function control (pid: number, ...options: string[]): void {
  const r = spawnSync('callgrind_control', [...options, String(pid)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`callgrind_control ${options.join(' ')} ${pid}: ${r.stderr}${r.stdout}`)
}

/** The main thread's instructions in dump `index` of `pid`. */
function dumped (dir: string, pid: number, index: number): number {
  const file = readdirSync(dir).find((f) => f.startsWith(`cg.${pid}.${index}-`) && f.endsWith('-01'))
  if (file === undefined) throw new Error(`no dump cg.${pid}.${index}-01 in ${dir}`)
  const line = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'))
  if (!line) throw new Error(`no totals in ${file}`)
  return Number(line[1])
}

const perRequest = new Map<Target, number[]>()
let current: ChildProcess | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { current?.kill('SIGKILL'); source?.child.kill('SIGKILL'); process.exit(1) })
const dir = mkdtempSync(join(tmpdir(), 'bench-api-instructions-'))
try {
  for (const target of chosen) {
    const started = Date.now()
    const { child, url } = await startCounted(target, dir, await freePort())
    const pid = child.pid as number
    current = child
    try {
      log(`${target.label}: ready after ${((Date.now() - started) / 1000).toFixed(0)} s; ${args.warmup} warm-up requests`)
      await drive(url, Number(args.warmup))
      control(pid, '--instr=on')
      // The first dump holds what switching instrumentation on did, not a batch of requests.
      control(pid, '--dump')
      const samples: number[] = []
      for (let s = 1; s <= Number(args.samples); s++) {
        await drive(url, Number(args.requests))
        control(pid, '--dump')
        samples.push(dumped(dir, pid, s + 1) / Number(args.requests))
        log(`${target.label}: batch ${s}: ${samples.at(-1)?.toFixed(0)} instructions/request on the main thread`)
      }
      perRequest.set(target, samples)
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
} finally {
  await source?.stop()
  rmSync(dir, { recursive: true, force: true })
  const redis = new Redis(REDIS_URL)
  for await (const keys of redis.scanStream({ match: `${TAG}:*`, count: 1000 })) if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]))
  redis.disconnect()
}

const api = targets[0] as Target
const of = (t: Target): number => median(perRequest.get(t) ?? [Number.NaN])
console.log(`\nInstructions per request (callgrind) on the main thread, median of ${args.samples} batches of ${args.requests} requests after ${args.warmup} warm-up requests, ${args.concurrency} in flight; GET ${ROUTE} (cached) with an API key, api at LOG_LEVEL=${args['log-level']}:\n`)
console.log(table(chosen.map((t) => ({
  server: t.label,
  'instructions/request': of(t).toFixed(0),
  'share of the api': perRequest.has(api) && t !== api ? `${(of(t) / of(api) * 100).toFixed(0)}%` : '',
  'each batch': (perRequest.get(t) ?? []).map((x) => x.toFixed(0)).join(', ')
}))))
