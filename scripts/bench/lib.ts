import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { projectRoot } from '../../services/platform/paths.js'
import { profiledSymbols, sumBy } from './perf-profile.js'

// Every benchmark measures the runtime the project pins (the `node` devDependency): `node dist/scripts/bench/...` with
// another Node on the PATH would start the services on it too, and print figures of that runtime as this project's.
const pinnedNode = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { devDependencies?: Record<string, string> }).devDependencies?.node
if (pinnedNode !== undefined && process.versions.node !== pinnedNode) {
  console.error(`[bench] this is Node ${process.versions.node}, not the pinned ${pinnedNode}: run the benchmark with npm run, or with node_modules/.bin/node`)
  process.exit(1)
}

export interface Service {
  url: string
  child: ChildProcess
  stop: () => Promise<void>
}

/**
 * Starts a service entry in its own process (the load generator must not share its event loop); with `cpus`
 * (`taskset -c` syntax), on those CPUs only, every thread of it.
 */
export async function startService (entry: string, env: Record<string, string>, port: number, nodeArgs: string[] = [], cpus?: string): Promise<Service> {
  const command = [process.execPath, ...nodeArgs, join(projectRoot, entry)]
  // taskset execs the command: the child's pid is the service's.
  const argv = cpus === undefined ? command : ['taskset', '-c', cpus, ...command]
  // BENCH_SERVICE_LOGS=<dir> keeps each service's log lines, in <dir>/<entry>-<port>.log: what its errors were.
  const logs = process.env.BENCH_SERVICE_LOGS
  const stdout = logs === undefined ? 'ignore' : openSync(join(logs, `${basename(entry).replace(/\.[cm]?js$/, '')}-${port}.log`), 'w')
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', PORT: String(port), ...env },
    stdio: ['ignore', stdout, 'inherit']
  })
  if (typeof stdout === 'number') closeSync(stdout)
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`${entry} exited with ${child.exitCode}`)
    if (await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)) break
    await sleep(50)
  }
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/**
 * Runs `script` with `args` in a new process started as production starts a service (the OpenTelemetry preload
 * first), with only PATH and `env` in its environment; resolves with what it printed on stdout, parsed as JSON.
 */
export function runPreloaded<T> (script: string, args: string[], env: Record<string, string>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), script, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as T)
      else reject(new Error(`${script} exited with ${code}`))
    })
  })
}

export interface LoadResult {
  rps: number
  avgMs: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
  /** How many answers came with each status code (`200: 51234, 503: 12`), to say what the non-2xx ones were. */
  statuses: string
  /** Responses received. */
  requests: number
}

export async function load (url: string, connections: number, durationS: number, headers: Record<string, string> = {}): Promise<LoadResult> {
  return loadResult(await autocannon({ url, connections, duration: durationS, pipelining: 1, headers }))
}

/** How many answers came with each status code (`200: 51234, 503: 12`); with `notOk`, only those not 2xx. */
export function statusCounts (r: autocannon.Result, notOk = false): string {
  return Object.entries(r.statusCodeStats ?? {}).filter(([code]) => !notOk || !code.startsWith('2')).map(([code, { count }]) => `${code}: ${count}`).join(', ')
}

/** What a load of autocannon's answered. */
export function loadResult (r: autocannon.Result): LoadResult {
  const statuses = statusCounts(r)
  return { rps: r.requests.average, avgMs: r.latency.average, p50Ms: r.latency.p50, p99Ms: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx, statuses, requests: r.requests.total }
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** Operations per second of `op`, run `n` times with `concurrency` in flight. */
export async function opsPerSecond (n: number, concurrency: number, op: (i: number) => unknown): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await op(next++)
  }))
  return n / ((performance.now() - started) / 1000)
}

export function table (rows: Array<Record<string, string | number>>): string {
  const headers = Object.keys(rows[0] ?? {})
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map((r) => line(headers.map((h) => r[h] ?? '')))].join('\n')
}

/**
 * CPU time (ms) the service's process has used so far, or its main thread's alone (the event loop), from Linux /proc;
 * undefined elsewhere. Divided by the requests of a load, it tells a costlier service from a busier machine, which
 * throughput cannot. Read from the scheduler's count of each thread's run time, in nanoseconds
 * (`/proc/<pid>/task/<tid>/schedstat`), not from `/proc/<pid>/stat`, whose user and system times come in 10 ms
 * ticks: a few hundred requests' CPU would move in steps of a sixth of itself.
 */
export function processCpuMs (service: Service, mainThread = false): number | undefined {
  const pid = service.child.pid
  try {
    let ns = 0
    for (const tid of mainThread ? [String(pid)] : readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return ns / 1e6
  } catch {
    return undefined
  }
}

/**
 * `perf record` of one process with a CPU clock (whose event count is in nanoseconds, as `cpuPerRequest` reads it;
 * perf's default event is the CPU's cycles where it has counters) until `stop()`, which fails when perf ended early
 * or wrote nothing: a profile that is not there must not read as one without the symbols looked for.
 */
export function recordPerf (pid: number, out: string, frequency = 1999, callChains = false): { stop: () => Promise<void> } {
  const perf = spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(frequency), ...(callChains ? ['-g'] : []), '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  perf.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // Listened for from the start: perf that could not attach exits before anyone waits for it.
  const exited = new Promise<void>((resolve) => {
    perf.once('exit', () => { resolve() })
    perf.once('error', (error) => { stderr += String(error); resolve() })
  })
  return {
    stop: async () => {
      const early = perf.exitCode !== null || perf.signalCode !== null || perf.pid === undefined
      if (!early) perf.kill('SIGINT')
      await exited
      if (early || !stderr.includes('Captured and wrote')) throw new Error(`perf record of process ${pid} failed: ${stderr.trim().slice(-500)}`)
    }
  }
}

/** perf's report (`--sort sym`, of a `recordPerf` profile) as CPU microseconds per request by symbol. */
export function cpuPerRequest (report: string, requests: number): Map<string, number> {
  return sumBy(profiledSymbols(report, requests), (s) => s.symbol)
}

/** Ends the bench `name` with a clear line when linux perf is not installed, before it starts anything. */
export function requirePerf (name: string): void {
  if (spawnSync('perf', ['--version']).status === 0) return
  console.error(`[${name}] needs linux perf (apt-get install linux-perf)`)
  process.exit(1)
}

/**
 * `perf report --no-children --stdio` of the profile `data` with `options` (`--sort sym` unless given), as text; a
 * report perf could not write throws, rather than reading as a profile without the symbols looked for.
 */
export function perfReport (data: string, options: string[] = ['--sort', 'sym']): string {
  const report = spawnSync('perf', ['report', '-i', data, '--no-children', ...options, '--stdio'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  if (report.status !== 0) throw new Error(`perf report of ${data} failed: ${report.error?.message ?? ''} ${report.stderr.trim().slice(-500)}`)
  return report.stdout
}

/** A `taskset -c` / cpuset list (`0-2,5`) as the CPUs it names, in order. */
export function parseCpuList (list: string): number[] {
  return list.trim().split(',').filter(Boolean).flatMap((part) => {
    const [from, to] = part.split('-').map(Number)
    if (from === undefined || !Number.isInteger(from) || (to !== undefined && !Number.isInteger(to))) throw new Error(`not a CPU list: ${list}`)
    return to === undefined ? [from] : Array.from({ length: to - from + 1 }, (_v, i) => from + i)
  })
}

/**
 * How a pinned benchmark splits the CPUs this process may use (its affinity, read from /proc: under `taskset -c 2,3`
 * or a container's cpuset they are not 0..N-1): the last for the servers, the others for the bench, its load
 * generator and what it starts after pinning itself (`taskset -a -p -c <bench> <pid>`).
 */
export function pinning (allowed = allowedCpus()): { servers: string, bench: string } {
  if (allowed.length < 2) throw new Error(`--pin needs two CPUs or more (this process may use ${allowed.join(',') || 'none'}): the servers on the last, the bench on the others`)
  return { servers: String(allowed.at(-1)), bench: allowed.slice(0, -1).join(',') }
}

/** The CPUs this process may run on (its affinity), in order. */
export function allowedCpus (): number[] {
  return parseCpuList(/^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '')
}
