import { copyFileSync, readFileSync, rmSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { callgrindControl, dumpedThreads } from './callgrind.js'
import { functionCosts, literalKeysRuntime, optimizingCompilation, readPerfMap, sumCosts, type FunctionCost } from './callgrind-functions.js'
import { median } from './lib.js'

/** What one process's batches counted, per request, batch by batch. */
export interface CountedBatches {
  /** The main thread's instructions per request, as counted. */
  counted: number[]
  /** All threads' instructions per request, as counted. */
  allThreads: number[]
  /** The main thread's, net of the idle process's instructions per second over the batch's duration. */
  net: number[]
  /** Of the main thread's, those spent compiling optimized code (V8's `Compiler::CompileOptimized`, inclusive). */
  compiled: number[]
  /** Of the main thread's, those V8's runtime spent defining object literals' computed keys (`literalKeysRuntime`). */
  literalKeys: number[]
  /** The machine's one-minute load average at the end of each batch. */
  load: number[]
  /** The idle process's main-thread instructions per second. */
  idlePerSecond: number
  /** The main thread's instructions per request by function over every batch (when `functions` was asked for). */
  byFunction?: Map<string, FunctionCost>
}

export interface CountOptions {
  pid: number
  /** Where the process writes its dumps (`--callgrind-out-file=<dir>/cg.%p --separate-threads=yes`). */
  dir: string
  /** Seconds counted with no request in flight. */
  idleSeconds: number
  /**
   * Seconds left to pass, uncounted and with no request in flight, before the idle seconds: the warm-up leaves
   * compilation and garbage-collection work behind it, which counted as idle made the idle rate swing fourfold
   * between processes of the same configuration.
   */
  settleSeconds?: number
  samples: number
  requests: number
  /** Sends `n` requests and resolves when all are answered. */
  drive: (n: number) => Promise<void>
  /** Read the costs by function (the process runs with `--perf-basic-prof --no-compact-code-space`). */
  functions?: boolean
  /** Copy V8's perf map into `dir`, to name the kept dumps' addresses later. */
  keepPerfMap?: boolean
  log?: (message: string) => void
}

/**
 * Counts `samples` batches of `requests` requests of a process already running under callgrind with
 * `--instr-atstart=no` and warmed up. Work driven by the clock (under-pressure's once-a-second sample of the memory
 * and the event-loop delay histogram, pool health checks, cache and key-change timers) is the same per second with
 * or without traffic, but under valgrind a second holds some 50 times fewer requests than without, and how many
 * depends on the machine's load and on the configuration counted: so each batch is also given net of the idle
 * process's instructions per second (`idleSeconds` counted first with nothing in flight) over the batch's duration,
 * and of the instructions V8 spent compiling optimized code in it.
 */
export async function countBatches (o: CountOptions): Promise<CountedBatches> {
  await sleep((o.settleSeconds ?? 5) * 1000)
  callgrindControl(o.pid, '--instr=on')
  // The first dump holds what switching instrumentation on did, not a batch of requests.
  callgrindControl(o.pid, '--dump')
  const idleStarted = performance.now()
  await sleep(o.idleSeconds * 1000)
  callgrindControl(o.pid, '--dump')
  const idlePerMs = dumpedThreads(o.dir, o.pid, 2).main / (performance.now() - idleStarted)
  o.log?.(`idle: ${(idlePerMs * 1000).toFixed(0)} instructions/second on the main thread`)
  const result: CountedBatches = { counted: [], allThreads: [], net: [], compiled: [], literalKeys: [], load: [], idlePerSecond: idlePerMs * 1000 }
  // Batches are dumps 3.. (1 and 2 are the switch and the idle seconds); the main thread's file ends in -01.
  const mainDump = (s: number): string => join(o.dir, `cg.${o.pid}.${s + 2}-01`)
  for (let s = 1; s <= o.samples; s++) {
    const started = performance.now()
    await o.drive(o.requests)
    callgrindControl(o.pid, '--dump')
    const elapsed = performance.now() - started
    const { main, all } = dumpedThreads(o.dir, o.pid, s + 2)
    result.counted.push(main / o.requests)
    result.allThreads.push(all / o.requests)
    result.net.push((main - idlePerMs * elapsed) / o.requests)
    const costs = functionCosts(readFileSync(mainDump(s), 'utf8'))
    result.compiled.push(optimizingCompilation(costs) / o.requests)
    result.literalKeys.push(literalKeysRuntime(costs) / o.requests)
    result.load.push(loadavg()[0] ?? 0)
    o.log?.(`batch ${s}: ${result.counted.at(-1)?.toFixed(0)} instructions/request on the main thread (${result.allThreads.at(-1)?.toFixed(0)} in all threads), ${result.net.at(-1)?.toFixed(0)} net of the idle rate, ${result.compiled.at(-1)?.toFixed(0)} of them compiling optimized code, ${result.literalKeys.at(-1)?.toFixed(0)} in V8's runtime defining object literals' keys; load average ${result.load.at(-1)?.toFixed(1)}`)
  }
  if (o.functions === true) {
    // Read after the batches, when the map names the code they ran.
    const perfMap = `/tmp/perf-${o.pid}.map`
    const map = readPerfMap(perfMap)
    const batches = Array.from({ length: o.samples }, (_, i) => functionCosts(readFileSync(mainDump(i + 1), 'utf8'), map))
    result.byFunction = sumCosts(batches, o.samples * o.requests)
    if (o.keepPerfMap === true) copyFileSync(perfMap, join(o.dir, `perf-${o.pid}.map`))
    rmSync(perfMap, { force: true })
  }
  return result
}

/** Each batch net of the idle rate and of optimizing compilation: what serving the requests cost once V8's code has settled. */
export const settledBatches = (c: CountedBatches): number[] => c.net.map((x, i) => x - (c.compiled[i] ?? Number.NaN))

export const medianOf = (xs: number[] | undefined): number => median(xs !== undefined && xs.length > 0 ? xs : [Number.NaN])

/**
 * Above this many instructions a request in V8's runtime defining object literals' keys, a batch ran the slow path
 * `literalKeysRuntime` describes (about 50,000 where it happens, about 1,600 where it does not).
 */
export const SLOW_LITERAL_KEYS = 10_000

/** Whether any batch of `c` ran that slow path. */
export const ranSlowLiteralKeys = (c: CountedBatches): boolean => c.literalKeys.some((x) => x > SLOW_LITERAL_KEYS)

/**
 * Whether any batch of `c` ran on a machine busier than its CPUs: the counts then grow with the batches' durations
 * (work driven by the clock, at its rate under load, which the idle rate does not subtract). On 2026-12-03 a load
 * average of 11 on two CPUs took (a)'s batches from about 340,000 to 516,000-559,000 instructions per request, net.
 */
export const ranBusy = (c: CountedBatches): boolean => c.load.some((x) => x > availableParallelism())
