import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { load, median, perfReport, processCpuMs, recordPerf, requirePerf, type Service, startService, table } from './lib.js'
import { byCategory, chainNanos, functionOf, profiledSymbols, sumBy, type ProfiledSymbol } from './perf-profile.js'
import { seededSchema } from './seeded-schema.js'

/**
 * `npm run bench:route-profile [-- --processes 3]`: what bench:cache's cached route (GET /api/v1/leads from the cache,
 * API key checked, rate limiter off, `LOG_LEVEL=warn`) pays over its ceiling (bare Fastify sending the same bytes and
 * headers from memory), by where the CPU goes. Each of `--processes` pairs of new processes (the api and the ceiling,
 * both with `--perf-basic-prof`, which names JavaScript functions with their files) is loaded for `--warmup` seconds,
 * then sampled by `perf record` (a CPU clock) in `--windows` windows of `--duration` seconds of the same load each, the
 * two processes in turn, which one goes first alternating from window to window. Printed: each pair's throughput and
 * CPU per request, the CPU per request by category (the kernel, V8's parts, Node's native parts, JavaScript by package
 * or chassis plugin) for each and their difference, and the symbols whose CPU per request differs most. Medians over the pairs; perf counts a function's inlined callees
 * as its own, so a category holds what was compiled into its functions.
 */
const { values: args } = parseArgs({
  options: {
    processes: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '8' },
    duration: { type: 'string', default: '3' },
    windows: { type: 'string', default: '4' },
    connections: { type: 'string', default: '100' },
    symbols: { type: 'string', default: '25' },
    // Kernel functions whose call chains are summed (perf records call chains when any is named; '' for none): the
    // samples with sock_def_readable in their chain are the kernel waking the peer of a socket written to (on loopback,
    // the reader's wake-up runs in the writer's system call).
    chains: { type: 'string', default: 'sock_def_readable' }
  }
})
requirePerf('bench:route-profile')
for (const name of ['processes', 'warmup', 'duration', 'windows', 'connections', 'symbols'] as const) {
  if (!(Number(args[name]) > 0 && Number.isInteger(Number(args[name])))) throw new Error(`--${name}: a whole number above 0, not ${args[name]}`)
}
const log = (m: string): void => console.log(`[bench:route-profile] ${m}`)
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_cache'
const OURS = 'cached route (ours)'
const CEILING = 'ceiling (bare Fastify, bytes in memory)'

const pool = await seededSchema(DATABASE_URL, SCHEMA, 10_000, log)
const { key } = await new ApiKeyStore(pool).mint('bench:route-profile', ['leads:read'])
await pool.close()
const headers = { 'x-api-key': key }
const dir = mkdtempSync(join(tmpdir(), 'bench-route-profile-'))
interface Profiled { rps: number, cpu: number, categories: Map<string, number>, symbols: Map<string, number>, chains: Map<string, number> }
interface Window { requests: number, seconds: number, cpuMs: number, symbols: ProfiledSymbol[], chains: Map<string, number> }
const chains = args.chains.split(',').map((c) => c.trim()).filter((c) => c !== '')
const pairs: Array<Record<string, Profiled>> = []

async function profile (name: string, service: Service, out: string): Promise<Window> {
  const url = `${service.url}/api/v1/leads`
  const perf = recordPerf(service.child.pid as number, out, 1999, chains.length > 0)
  let measured: { requests: number, cpuMs: number }
  try {
    // perf's attaching takes a moment: the load starts after it, so the profile spans the whole load.
    await sleep(300)
    const before = processCpuMs(service)
    const r = await load(url, Number(args.connections), Number(args.duration), headers)
    const after = processCpuMs(service)
    if (r.errors + r.non2xx > 0 || r.requests === 0) throw new Error(`${name}: ${r.requests} requests, ${r.errors} errors, ${r.non2xx} not 2xx (${r.statuses})`)
    measured = { requests: r.requests, cpuMs: before !== undefined && after !== undefined ? after - before : Number.NaN }
  } finally {
    await perf.stop()
  }
  const report = perfReport(out, ['--sort', 'sym', '-F', 'period,sym'])
  const inChains = new Map<string, number>()
  for (const parent of chains) inChains.set(parent, chainNanos(perfReport(out, ['--sort', 'parent', '--parent', parent, '-F', 'period,parent', '-g', 'none'])) / 1000 / measured.requests)
  // Read: a window's profile with call chains runs to tens of megabytes, and a run has dozens of windows.
  rmSync(out, { force: true })
  return { requests: measured.requests, seconds: Number(args.duration), cpuMs: measured.cpuMs, symbols: profiledSymbols(report, measured.requests), chains: inChains }
}

/** A process's windows as one profile: each symbol's CPU over all of them, per request of all of them. */
function merged (windows: Window[]): Profiled {
  const requests = windows.reduce((n, w) => n + w.requests, 0)
  const symbols = windows.flatMap((w) => w.symbols.map((s) => ({ ...s, us: s.us * w.requests / requests })))
  return {
    rps: requests / windows.reduce((n, w) => n + w.seconds, 0),
    cpu: windows.reduce((n, w) => n + w.cpuMs, 0) * 1000 / requests,
    categories: byCategory(symbols),
    symbols: sumBy(symbols, (s) => functionOf(s.symbol, projectRoot)),
    chains: new Map(chains.map((parent) => [parent, windows.reduce((sum, w) => sum + (w.chains.get(parent) ?? 0) * w.requests, 0) / requests]))
  }
}

try {
  for (let p = 0; p < Number(args.processes); p++) {
    const env = { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL, CACHE_PREFIX: `bench:${process.pid}:rp${p}:`, RATE_LIMIT_ENABLED: 'false', CACHE_ENABLED: 'true' }
    // Each kept as it starts, so that a failure to start the second still stops the first.
    const services: Array<[string, Service]> = []
    try {
      const ours = await startService('dist/services/api/main.js', env, await freePort(), ['--perf-basic-prof'])
      services.push([OURS, ours])
      services.push([CEILING, await startService('dist/scripts/bench/ceiling-server.js', { BENCH_SOURCE_URL: `${ours.url}/api/v1/leads`, BENCH_API_KEY: key }, await freePort(), ['--perf-basic-prof'])])
      for (const [, service] of services) await load(`${service.url}/api/v1/leads`, Number(args.connections), Number(args.warmup), headers)
      // The pair's windows alternate (ours first in even windows of even pairs): a drift of the machine over seconds
      // reaches both.
      const windows = new Map<string, Window[]>([[OURS, []], [CEILING, []]])
      for (let w = 0; w < Number(args.windows); w++) {
        for (const [name, service] of (p + w) % 2 === 0 ? services : [...services].reverse()) {
          const window = await profile(name, service, join(dir, `${p}-${w}-${name === OURS ? 'ours' : 'ceiling'}.data`))
          windows.get(name)?.push(window)
        }
      }
      const pair: Record<string, Profiled> = { [OURS]: merged(windows.get(OURS) ?? []), [CEILING]: merged(windows.get(CEILING) ?? []) }
      for (const name of [OURS, CEILING]) log(`pair ${p + 1}, ${name}: ${pair[name]?.rps.toFixed(0) ?? ''} req/s, ${pair[name]?.cpu.toFixed(1) ?? ''} µs of CPU per request`)
      pairs.push(pair)
    } finally {
      await Promise.all(services.map(([, s]) => s.stop()))
      // The perf maps --perf-basic-prof wrote, read by perf report above.
      for (const [, s] of services) rmSync(`/tmp/perf-${s.child.pid ?? 0}.map`, { force: true })
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}

const get = (pair: Record<string, Profiled>, name: string): Profiled => pair[name] as Profiled
const perfTotal = (p: Profiled): number => [...p.categories.values()].reduce((sum, us) => sum + us, 0)
console.log(`\nGET /api/v1/leads from the cache against the ceiling, autocannon ${args.connections} connections, ${args.warmup} s of warm-up, then ${args.windows} windows of ${args.duration} s each, the two in turn, sampled by perf record -F 1999 (a CPU clock); CPU per request from /proc over the load:\n`)
console.log(table(pairs.map((pair, i) => ({
  pair: i + 1,
  'ours req/s': get(pair, OURS).rps.toFixed(0),
  'ceiling req/s': get(pair, CEILING).rps.toFixed(0),
  'ours CPU µs/request': get(pair, OURS).cpu.toFixed(1),
  'ceiling CPU µs/request': get(pair, CEILING).cpu.toFixed(1),
  // perf's own total beside /proc's: well under it, perf missed part of the load.
  'perf µs/request, ours / ceiling': `${perfTotal(get(pair, OURS)).toFixed(1)} / ${perfTotal(get(pair, CEILING)).toFixed(1)}`,
  "ceiling's share of our CPU": `${(get(pair, CEILING).cpu / get(pair, OURS).cpu * 100).toFixed(0)}%`
}))))

/**
 * Per key, the median over the pairs of ours, the ceiling's and their difference (each pair's own, so the difference
 * need not be the difference of the two medians), and the range of the pairs' differences.
 */
function compared (pick: (p: Profiled) => Map<string, number>): Array<{ key: string, ours: number, ceiling: number, difference: number, range: string }> {
  const keys = new Set(pairs.flatMap((pair) => [...pick(get(pair, OURS)).keys(), ...pick(get(pair, CEILING)).keys()]))
  return [...keys].map((key) => {
    const o = pairs.map((pair) => pick(get(pair, OURS)).get(key) ?? 0)
    const c = pairs.map((pair) => pick(get(pair, CEILING)).get(key) ?? 0)
    const differences = o.map((v, i) => v - (c[i] ?? 0))
    return { key, ours: median(o), ceiling: median(c), difference: median(differences), range: `${Math.min(...differences).toFixed(2)}..${Math.max(...differences).toFixed(2)}` }
  })
}
const categories = compared((p) => p.categories).sort((a, b) => b.difference - a.difference)
const total = (name: string): number => median(pairs.map((pair) => perfTotal(get(pair, name))))
const gap = median(pairs.map((pair) => perfTotal(get(pair, OURS)) - perfTotal(get(pair, CEILING))))
console.log(`\nCPU µs per request by category, from perf (medians over ${pairs.length} pairs; all of perf's samples per request: ours ${total(OURS).toFixed(1)}, the ceiling ${total(CEILING).toFixed(1)}, the difference ${gap.toFixed(1)}):\n`)
console.log(table(categories.map((c) => ({ category: c.key, ours: c.ours.toFixed(2), ceiling: c.ceiling.toFixed(2), difference: c.difference.toFixed(2), 'difference, per pair': c.range }))))
const symbols = compared((p) => p.symbols).sort((a, b) => Math.abs(b.difference) - Math.abs(a.difference)).slice(0, Number(args.symbols))
console.log(`\nThe ${symbols.length} symbols whose CPU per request differs most (µs, medians over the pairs):\n`)
console.log(table(symbols.map((s) => ({ symbol: s.key.slice(0, 140), ours: s.ours.toFixed(2), ceiling: s.ceiling.toFixed(2), difference: s.difference.toFixed(2), 'difference, per pair': s.range }))))
if (chains.length > 0) {
  console.log('\nCPU µs per request of the samples with the function in their call chain, whatever runs at the top (medians over the pairs):\n')
  console.log(table(compared((p) => p.chains).map((c) => ({ 'in the chain': c.key, ours: c.ours.toFixed(2), ceiling: c.ceiling.toFixed(2), difference: c.difference.toFixed(2), 'difference, per pair': c.range }))))
}
