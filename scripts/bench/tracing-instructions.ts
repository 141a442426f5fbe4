import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivatePostgres } from '../../test/helpers/private-postgres.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { startUnderCallgrind } from './callgrind.js'
import { countBatches, medianOf, ranBusy, ranSlowLiteralKeys, settledBatches, SLOW_LITERAL_KEYS, type CountedBatches } from './counted-batches.js'
import { table } from './lib.js'
import { startOtlpSink, type OtlpSink } from './otlp-sink.js'
import { apiEnvironment, driveTracingRequests, prepareTracingBench, tracingConfigs, type TracingConfig } from './tracing-setup.js'

/**
 * The cost of tracing in instructions per request, which, unlike req/s or CPU time, depends on how busy the machine
 * is only through the work the clock drives (a busy machine's batches last longer; each batch's load average is
 * printed): the api runs under valgrind's callgrind, which counts the instructions the process executes.
 * Each configuration is one process, on a PostgreSQL and a Redis of the bench's own (on shared ones, what other clients do reaches the api: a key minted anywhere is announced to every
 * listener), started with callgrind's instrumentation off (start-up and warm-up run at valgrind's lighter speed and
 * are not counted), warmed up, counted idle for `--idle` seconds, then over `--samples` batches of `--requests`
 * requests, each batch dumped on its own (callgrind_control --dump zeroes the counters). Each batch is given as
 * counted, net of the idle rate (the timers' work per second over the batch's duration) and net of V8's optimizing
 * compilation too (counted-batches.ts); the median batch is reported. The requests are bench:tracing's: a cached
 * lead and a lead's activities (PostgreSQL) in turn.
 */
const { values: args } = parseArgs({
  options: {
    // Under valgrind V8 is slow to settle its code: after 2,000 warm-up requests a batch of 300 still spent from 5% to
    // a third of its instructions compiling optimized code. Each batch is printed, so a run shows whether its counts
    // had settled.
    warmup: { type: 'string', default: '5000' },
    requests: { type: 'string', default: '1000' },
    samples: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '4' },
    // Seconds counted with no request in flight: what the process's timers cost per second.
    idle: { type: 'string', default: '10' },
    // V8 on one thread, as bench:api-instructions runs it. Not the default here: with the garbage collector's whole
    // work on the main thread, the batches of one configuration moved by half, and traced configurations counted
    // fewer instructions than untraced ones.
    'single-threaded': { type: 'boolean', default: false },
    // Only these configurations, by letter (a,b,c,d), to compare a change quickly.
    only: { type: 'string', default: 'a,b,c,d' },
    // Keep callgrind's dumps in this directory, for callgrind_annotate, instead of deleting them.
    keep: { type: 'string' },
    // V8 writes /tmp/perf-<pid>.map, which names the JIT-compiled JavaScript functions that callgrind shows as
    // addresses; code is not moved by compaction, so the addresses stay valid.
    'perf-map': { type: 'boolean', default: false },
    // Print the main thread's instructions per request by function (JavaScript functions named from the perf map):
    // (a)'s top N, and for every other configuration the N functions whose count differs most from (a)'s.
    functions: { type: 'string' }
  }
})
const functionsShown = args.functions === undefined ? 0 : Number(args.functions)
if (functionsShown > 0) args['perf-map'] = true
const TAG = `bench-tracing-instructions-${process.pid}`
const log = (m: string): void => console.log(`[bench:tracing-instructions] ${m}`)

const postgres = await startPrivatePostgres()
const redisServer = await startPrivateRedis()
let prepared: { ids: string[], key: string }
try {
  prepared = await prepareTracingBench('bench:tracing-instructions', postgres.url)
} catch (error) {
  postgres.destroy()
  await redisServer.destroy()
  throw error
}
const { ids, key } = prepared
const base = { ...apiEnvironment, DATABASE_URL: postgres.url, REDIS_URL: redisServer.url }
type Config = TracingConfig
const configs = tracingConfigs.filter((c) => args.only.split(',').includes(c.letter))

// One count per thread: the main thread's (the event loop, with most of the garbage collector) is steadier than the
// whole process's, which also holds V8's background compiler and GC helpers.
const VALGRIND = ['--tool=callgrind', '--trace-children=no', '--instr-atstart=no', '--separate-threads=yes',
  // V8 writes machine code into its heap and rewrites it: valgrind must notice code changed outside the stack.
  '--smc-check=all-non-file']
const node = process.execPath
const nodeFlags = [...(args['single-threaded'] ? ['--single-threaded'] : []), ...(args['perf-map'] ? ['--perf-basic-prof', '--no-compact-code-space'] : []), '--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]
const entry = join(projectRoot, 'dist', 'services', 'api', 'main.js')
console.log(`api under: valgrind ${VALGRIND.join(' ')} --callgrind-out-file=<dir>/cg.%p ${node} ${nodeFlags.join(' ')} ${entry}`)

async function startCounted (config: Config, sink: OtlpSink | undefined, dir: string, port: number): Promise<{ child: ChildProcess, url: string }> {
  const prefix = `${TAG}:${config.letter}`
  const env = { ...base, CACHE_PREFIX: `${prefix}:c:`, RATE_LIMIT_PREFIX: `${prefix}:rl:`, ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}), ...config.env }
  return await startUnderCallgrind(config.label, VALGRIND, [...nodeFlags, entry], env, port, dir)
}

const from = { sent: 0 }
const drive = async (url: string, n: number): Promise<void> => { await driveTracingRequests(url, ids, key, n, Number(args.concurrency), from) }


const counts = new Map<Config, CountedBatches>()
let current: ChildProcess | undefined
// An interrupted run leaves no api running under valgrind, nor its servers.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { current?.kill('SIGKILL'); postgres.destroy(); void redisServer.destroy().finally(() => process.exit(1)) })
function dumpDirectory (keep: string | undefined): string {
  if (keep === undefined) return mkdtempSync(join(tmpdir(), 'bench-tracing-instructions-'))
  mkdirSync(keep, { recursive: true })
  return keep
}
const dir = dumpDirectory(args.keep)
try {
  for (const config of configs) {
    const sink = config.traced ? await startOtlpSink() : undefined
    const started = Date.now()
    const { child, url } = await startCounted(config, sink, dir, await freePort())
    current = child
    try {
      log(`${config.label}: ready after ${((Date.now() - started) / 1000).toFixed(0)} s; ${args.warmup} warm-up requests`)
      await drive(url, Number(args.warmup))
      counts.set(config, await countBatches({
        pid: child.pid as number, dir, idleSeconds: Number(args.idle), samples: Number(args.samples), requests: Number(args.requests),
        drive: async (n) => { await drive(url, n) },
        functions: functionsShown > 0,
        keepPerfMap: args.keep !== undefined,
        log: (m) => { log(`${config.label}: ${m}`) }
      }))
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
      sink?.close()
    }
  }
} finally {
  if (args.keep === undefined) rmSync(dir, { recursive: true, force: true })
  else log(`callgrind dumps kept in ${dir}`)
  postgres.destroy()
  await redisServer.destroy()
}

// Tracing's own cost is (c) and (d) against (b), which has the query statistics they also run; against (a), the
// statistics' cost is in it too.
const a = configs.find((c) => c.letter === 'a')
const b = configs.find((c) => c.letter === 'b')
const settledOf = (c: Config): number[] => { const x = counts.get(c); return x === undefined ? [] : settledBatches(x) }
const of = (c: Config): number => medianOf(settledOf(c))
const versus = (c: Config, base: Config | undefined): string => {
  if (base === undefined || c === base || !counts.has(base)) return ''
  const x = of(c)
  const y = of(base)
  return `${x >= y ? '+' : ''}${((x / y - 1) * 100).toFixed(1)}%`
}
const each = (xs: number[] | undefined): string => (xs ?? []).map((x) => x.toFixed(0)).join(', ')
console.log(`\nInstructions per request (callgrind) on the api's main thread, median of ${args.samples} batches of ${args.requests} requests after ${args.warmup} warm-up requests, ${args.concurrency} in flight; GET /api/v1/leads/:id (cached) and /api/v1/leads/:id/activities (PostgreSQL) in turn. Net: less the idle process's instructions per second over each batch's duration, and less V8's optimizing compilation:\n`)
console.log(table(configs.map((c) => ({
  configuration: c.label,
  'instructions/request, net': of(c).toFixed(0),
  'vs (a)': versus(c, a),
  'vs (b)': c.traced ? versus(c, b) : '',
  'each batch, net': each(settledOf(c)),
  'each batch, net of the idle rate only': each(counts.get(c)?.net),
  'each batch, as counted': each(counts.get(c)?.counted),
  'each batch, V8 runtime for literals\' keys': each(counts.get(c)?.literalKeys),
  'idle instructions/second': (counts.get(c)?.idlePerSecond ?? Number.NaN).toFixed(0)
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

if (functionsShown > 0) printFunctions(functionsShown)

function printFunctions (n: number): void {
  const round = (x: number | undefined): string => x === undefined ? '' : x.toFixed(0)
  for (const c of configs) {
    const costs = counts.get(c)?.byFunction
    if (costs === undefined) continue
    // A traced configuration against (b), which runs the same query statistics, when it was counted.
    const against = c === a ? undefined : c.traced && b !== undefined && counts.has(b) ? b : a
    const base = against === undefined ? undefined : counts.get(against)?.byFunction
    const name = `(${against?.letter ?? ''})`
    const names = base === undefined ? [...costs.keys()] : [...new Set([...costs.keys(), ...base.keys()])]
    const delta = (fn: string): number => (costs.get(fn)?.self ?? 0) - (base?.get(fn)?.self ?? 0)
    const top = names.sort((x, y) => Math.abs(delta(y)) - Math.abs(delta(x))).slice(0, n)
    console.log(`\n${c.label}: main-thread instructions per request by function, ${base === undefined ? 'the most' : `the largest differences from ${name}`} (self: in the function, inclusive: with what it called; not net of the idle rate)\n`)
    console.log(table(top.map((fn) => ({
      function: fn.length > 140 ? `${fn.slice(0, 137)}...` : fn,
      self: round(costs.get(fn)?.self ?? 0),
      inclusive: round(costs.get(fn)?.inclusive ?? 0),
      ...(base === undefined ? {} : { [`self in ${name}`]: round(base.get(fn)?.self ?? 0), [`self vs ${name}`]: round(delta(fn)), [`inclusive vs ${name}`]: round((costs.get(fn)?.inclusive ?? 0) - (base.get(fn)?.inclusive ?? 0)) })
    }))))
  }
}
