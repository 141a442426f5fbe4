import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { callgrindControl, dumpedThreads, startUnderCallgrind } from './callgrind.js'
import { functionCosts, readPerfMap, sumCosts, type FunctionCost } from './callgrind-functions.js'
import { median, table } from './lib.js'
import { startOtlpSink, type OtlpSink } from './otlp-sink.js'
import { apiEnvironment, prepareTracingBench, REDIS_URL, tracingConfigs, type TracingConfig } from './tracing-setup.js'

/**
 * The cost of tracing in instructions per request, which, unlike req/s or CPU time, does not depend on how busy the
 * machine is: the api runs under valgrind's callgrind, which counts the instructions the process executes (all its
 * threads). Each configuration is one process, started with callgrind's instrumentation off (start-up and warm-up
 * run at valgrind's lighter speed and are not counted), warmed up, then counted over `--samples` batches of
 * `--requests` requests, each batch dumped on its own (callgrind_control --dump zeroes the counters): the median
 * batch is reported. The requests are bench:tracing's: a cached lead and a lead's activities (PostgreSQL) in turn.
 */
const { values: args } = parseArgs({
  options: {
    // Under valgrind V8's background compiler is slow to deliver optimized code: with 200 warm-up requests the counts
    // still fell from batch to batch by a quarter, in every configuration. Each batch is printed, so a run shows
    // whether its counts had settled.
    warmup: { type: 'string', default: '2000' },
    requests: { type: 'string', default: '300' },
    samples: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '4' },
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

const { ids, key } = await prepareTracingBench('bench:tracing-instructions')
const base = apiEnvironment
type Config = TracingConfig
const allConfigs = tracingConfigs
const configs = allConfigs.filter((c) => args.only.split(',').includes(c.letter))

// One count per thread: the main thread's (the event loop, which every request waits for, and most of the garbage
// collector) is steadier than the whole process's, which also holds V8's background compiler and GC helpers.
const VALGRIND = ['--tool=callgrind', '--trace-children=no', '--instr-atstart=no', '--separate-threads=yes',
  // V8 writes machine code into its heap and rewrites it: valgrind must notice code changed outside the stack.
  '--smc-check=all-non-file']
const node = process.execPath
const preload = [...(args['perf-map'] ? ['--perf-basic-prof', '--no-compact-code-space'] : []), '--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]
const entry = join(projectRoot, 'dist', 'services', 'api', 'main.js')
console.log(`api under: valgrind ${VALGRIND.join(' ')} --callgrind-out-file=<dir>/cg.%p ${node} ${preload.join(' ')} ${entry}`)

async function startCounted (config: Config, sink: OtlpSink | undefined, dir: string, port: number): Promise<{ child: ChildProcess, url: string }> {
  const prefix = `${TAG}:${config.letter}`
  const env = { ...base, CACHE_PREFIX: `${prefix}:c:`, RATE_LIMIT_PREFIX: `${prefix}:rl:`, ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}), ...config.env }
  return await startUnderCallgrind(config.label, VALGRIND, [...preload, entry], env, port, dir)
}

let sent = 0
async function drive (url: string, n: number): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Number(args.concurrency) }, async () => {
    while (next < n) {
      next++
      const i = sent++
      const id = ids[(i >> 1) % ids.length] as string
      const res = await fetch(`${url}${i % 2 === 0 ? `/api/v1/leads/${id}` : `/api/v1/leads/${id}/activities?limit=5`}`, { headers: { 'x-api-key': key } })
      await res.arrayBuffer()
      if (!res.ok) throw new Error(`${res.url} answered ${res.status}`)
    }
  }))
}


const perRequest = new Map<Config, number[]>()
const allThreadsPerRequest = new Map<Config, number[]>()
const byFunction = new Map<Config, Map<string, FunctionCost>>()
let current: ChildProcess | undefined
// An interrupted run leaves no api running under valgrind.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { current?.kill('SIGKILL'); process.exit(1) })
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
    const pid = child.pid as number
    current = child
    try {
      log(`${config.label}: ready after ${((Date.now() - started) / 1000).toFixed(0)} s; ${args.warmup} warm-up requests`)
      await drive(url, Number(args.warmup))
      callgrindControl(pid, '--instr=on')
      // The first dump holds what instrumentation switched on, not a batch of requests.
      callgrindControl(pid, '--dump')
      const samples: number[] = []
      const allThreads: number[] = []
      for (let s = 1; s <= Number(args.samples); s++) {
        await drive(url, Number(args.requests))
        callgrindControl(pid, '--dump')
        const { main, all } = dumpedThreads(dir, pid, s + 1)
        samples.push(main / Number(args.requests))
        allThreads.push(all / Number(args.requests))
        log(`${config.label}: batch ${s}: ${samples.at(-1)?.toFixed(0)} instructions/request on the main thread, ${allThreads.at(-1)?.toFixed(0)} in all threads`)
      }
      perRequest.set(config, samples)
      allThreadsPerRequest.set(config, allThreads)
      if (functionsShown > 0) {
        // The main thread's dumps of every batch, per request: the map is read after the batches, when it names the code they ran.
        const map = readPerfMap(`/tmp/perf-${pid}.map`)
        const batches = Array.from({ length: Number(args.samples) }, (_, s) => functionCosts(readFileSync(join(dir, `cg.${pid}.${s + 2}-01`), 'utf8'), map))
        byFunction.set(config, sumCosts(batches, Number(args.samples) * Number(args.requests)))
      }
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
  const redis = new Redis(REDIS_URL)
  for await (const keys of redis.scanStream({ match: `${TAG}:*`, count: 1000 })) if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]))
  redis.disconnect()
}

const baseline = configs.find((c) => c.letter === 'a')
const of = (c: Config): number => median(perRequest.get(c) ?? [NaN])
const ofAll = (c: Config): number => median(allThreadsPerRequest.get(c) ?? [NaN])
const versus = (x: number, base: number): string => `${x >= base ? '+' : ''}${((x / base - 1) * 100).toFixed(1)}%`
console.log(`\nInstructions per request (callgrind) on the api's main thread and in all its threads, median of ${args.samples} batches of ${args.requests} requests after ${args.warmup} warm-up requests, ${args.concurrency} in flight; GET /api/v1/leads/:id (cached) and /api/v1/leads/:id/activities (PostgreSQL) in turn:\n`)
console.log(table(configs.map((c) => ({
  configuration: c.label,
  'main thread instructions/request': of(c).toFixed(0),
  'vs (a)': baseline === undefined || c === baseline ? '' : versus(of(c), of(baseline)),
  'main thread, each batch': (perRequest.get(c) ?? []).map((x) => x.toFixed(0)).join(', '),
  'all threads instructions/request': ofAll(c).toFixed(0),
  'all threads vs (a)': baseline === undefined || c === baseline ? '' : versus(ofAll(c), ofAll(baseline))
}))))

if (functionsShown > 0) printFunctions(functionsShown)

function printFunctions (n: number): void {
  const round = (x: number | undefined): string => x === undefined ? '' : x.toFixed(0)
  for (const c of configs) {
    const costs = byFunction.get(c)
    if (costs === undefined) continue
    const base = baseline === undefined || c === baseline ? undefined : byFunction.get(baseline)
    const names = base === undefined ? [...costs.keys()] : [...new Set([...costs.keys(), ...base.keys()])]
    const delta = (name: string): number => (costs.get(name)?.self ?? 0) - (base?.get(name)?.self ?? 0)
    const top = names.sort((x, y) => Math.abs(delta(y)) - Math.abs(delta(x))).slice(0, n)
    console.log(`\n${c.label}: main-thread instructions per request by function, ${base === undefined ? 'the most' : 'the largest differences from (a)'} (self: in the function, inclusive: with what it called)\n`)
    console.log(table(top.map((name) => ({
      function: name.length > 140 ? `${name.slice(0, 137)}...` : name,
      self: round(costs.get(name)?.self ?? 0),
      inclusive: round(costs.get(name)?.inclusive ?? 0),
      ...(base === undefined ? {} : { 'self in (a)': round(base.get(name)?.self ?? 0), 'self vs (a)': round(delta(name)), 'inclusive vs (a)': round((costs.get(name)?.inclusive ?? 0) - (base.get(name)?.inclusive ?? 0)) })
    }))))
  }
}
