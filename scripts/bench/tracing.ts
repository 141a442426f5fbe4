import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { median, processCpuMs, table, type LoadResult, type Service } from './lib.js'
import { startTracingServices } from './tracing-services.js'
import { ALL_SAMPLED, type TracingConfig, tracingConfigs } from './tracing-setup.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '3' },
    // The CPU per request is measured at this fixed rate, the same for every configuration, for this many seconds.
    rate: { type: 'string', default: '200' },
    'rate-duration': { type: 'string', default: '3' },
    rounds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    // 'name:KEY=value,KEY=value': one more configuration, traced at 100% with statistics and these variables, to
    // compare a change side by side in the same run.
    variant: { type: 'string', multiple: true, default: [] },
    // The api on the last CPU alone; the load generator, the sinks, and a PostgreSQL and a Redis of the bench's own
    // on the others (--no-pin: everything shares every CPU, on this machine's PostgreSQL and Redis).
    pin: { type: 'boolean', default: availableParallelism() >= 2 }
  },
  allowNegative: true
})
const log = (m: string): void => console.log(`[bench:tracing] ${m}`)
type Config = TracingConfig
const configs: Config[] = tracingConfigs.filter((c) => c.optional !== true)
for (const variant of args.variant ?? []) {
  const [name, vars = ''] = variant.split(':')
  const extra = Object.fromEntries(vars.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]))
  configs.push({ letter: 'd', label: `(d) + ${name}`, env: { QUERY_STATS_ENABLED: 'true', ...ALL_SAMPLED, ...extra }, traced: true, statistics: true })
}
const { apiCpu, start, load, queriesCounted, sinks, close } = await startTracingServices('bench:tracing', configs, { pin: args.pin ?? false, connections: Number(args.connections) }, log)

const results = new Map<Config, LoadResult[]>(configs.map((c) => [c, []]))
const errors = new Map<Config, number>()
const cpuPerRequest = new Map<Config, number[]>(configs.map((c) => [c, []]))
// The process's figure also holds its background threads: V8 still compiles the code it loaded (the SDK's, and
// PostgreSQL's parser in WebAssembly) for seconds after start, the same for any number of requests. The event loop's
// thread alone does the work per request.
const mainPerRequest = new Map<Config, number[]>(configs.map((c) => [c, []]))
const busy = new Map<Config, number[]>(configs.map((c) => [c, []]))
// Every request a process served, warm-up included, since its spans reach the sink too.
const served = new Map<Config, number>(configs.map((c) => [c, 0]))
let running: Service | undefined
try {
  for (let round = 1; round <= Number(args.rounds); round++) {
    // Every other round runs the configurations in reverse order, so a drift of the machine over a round does not
    // favour the configuration that always runs first.
    const order = round % 2 === 0 ? [...configs].reverse() : configs
    for (const config of order) {
      // A new process for every configuration in every round: two processes of the same build differ by several
      // percent in speed for as long as they live (memory layout, JIT decisions), which more rounds of the same
      // process would never average out.
      const service = running = await start(config)
      // The warm-up loads the hot leads into the cache and lets V8 optimize, PostgreSQL's parser (WebAssembly)
      // included, which costs seconds of CPU once per process.
      const warm = await load(service.url, Number(args.warmup))
      const loadStarted = processCpuMs(service)
      const r = await load(service.url, Number(args.duration))
      // Cores the api kept busy while loaded: pinned, near 1 says its CPU bounded the throughput.
      busy.get(config)?.push(((processCpuMs(service) ?? NaN) - (loadStarted ?? NaN)) / (Number(args.duration) * 1000))
      // CPU per request at saturation falls as the load rises (more requests per turn of the event loop), and on a
      // shared machine the load a service reaches swings from round to round: the CPU is read at one fixed rate.
      const cpuBefore = processCpuMs(service)
      const mainBefore = processCpuMs(service, true)
      const fixed = await load(service.url, Number(args['rate-duration']), Number(args.rate))
      const cpuAfter = processCpuMs(service)
      const mainAfter = processCpuMs(service, true)
      // A refused or failed answer is a fault of the service: the run stops. A timeout or a dropped connection is the
      // machine (a shared one can stall a process for seconds): counted and printed.
      if (r.non2xx + fixed.non2xx > 0) throw new Error(`${config.label}: ${r.non2xx + fixed.non2xx} non-2xx answers (${r.statuses}; at the fixed rate ${fixed.statuses})`)
      errors.set(config, (errors.get(config) ?? 0) + r.errors + fixed.errors)
      // The switch is checked, not assumed: with statistics off, no query may have reached them.
      const counted = await queriesCounted(service)
      if (config.statistics !== (counted > 0)) throw new Error(`${config.label}: query statistics counted ${counted} queries`)
      // A service exports its queued spans as it shuts down, so every span is counted before the sinks close.
      await service.stop()
      running = undefined
      // The sink counts what it holds now, between processes, not as the exports arrive during the load.
      sinks.get(config)?.spans()
      served.set(config, (served.get(config) ?? 0) + warm.requests + r.requests + fixed.requests + 1)
      const perRequest = (before?: number, after?: number): number => ((after ?? NaN) - (before ?? NaN)) * 1000 / fixed.requests
      cpuPerRequest.get(config)?.push(perRequest(cpuBefore, cpuAfter))
      mainPerRequest.get(config)?.push(perRequest(mainBefore, mainAfter))
      results.get(config)?.push(r)
      log(`round ${round} ${config.label}: ${r.rps.toFixed(0)} req/s, CPU/request ${perRequest(cpuBefore, cpuAfter).toFixed(0)} µs (main thread ${perRequest(mainBefore, mainAfter).toFixed(0)}), ${counted} queries counted`)
    }
  }
} finally {
  await running?.stop()
  await close()
}

const [baseline] = configs as [Config]
const rps = (c: Config): number => median((results.get(c) ?? []).map((r) => r.rps))
const cpu = (c: Config): number => median(cpuPerRequest.get(c) ?? [NaN])
const mainCpu = (c: Config): number => median(mainPerRequest.get(c) ?? [NaN])
const versus = (x: number, base: number): string => `${x >= base ? '+' : ''}${pct(x / base - 1)}`
// The machine drifts over a run: each round's throughput is compared with (a)'s in the same round, and the loss is
// the median of those paired ratios.
const losses = (c: Config, against: Config = baseline): number[] => (results.get(c) ?? []).map((r, i) => 1 - r.rps / ((results.get(against) ?? [])[i]?.rps ?? NaN))
// Tracing's own cost: a traced configuration against (b), which runs the same query statistics.
const statisticsOnly = configs[1] as Config
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const perRequest = (c: Config, what: 'spans' | 'bytes'): string => {
  const sink = sinks.get(c)
  if (!sink) return '0'
  const n = served.get(c) ?? 1
  return what === 'spans' ? (sink.spans() / n).toFixed(2) : (sink.bytes() / n).toFixed(0)
}
const otherBytes = (c: Config): string => ((sinks.get(c)?.otherBytes() ?? 0) / (served.get(c) ?? 1)).toFixed(0)
console.log(`\nGET /api/v1/leads/:id (cached) and /api/v1/leads/:id/activities (PostgreSQL) in turn, cache and rate limiter on Redis, autocannon ${args.connections} connections${args.pin ? `, the api alone on CPU ${apiCpu}` : ''}; ${args.rounds} rounds interleaved, each configuration a new process warmed up ${args.warmup} s, its throughput measured over ${args.duration} s, then its CPU per request over ${args['rate-duration']} s at ${args.rate} req/s; medians:\n`)
console.log(table(configs.map((c) => ({
  configuration: c.label,
  'req/s': rps(c).toFixed(0),
  'loss vs (a)': c === baseline ? '' : pct(median(losses(c))),
  'loss vs (b)': c.traced ? pct(median(losses(c, statisticsOnly))) : '',
  'p99 ms': median((results.get(c) ?? []).map((r) => r.p99Ms)).toFixed(0),
  'api cores busy under load': median(busy.get(c) ?? [NaN]).toFixed(2),
  'timeouts and errors': errors.get(c) ?? 0,
  'CPU µs/request': cpu(c).toFixed(0),
  'CPU vs (a)': c === baseline ? '' : versus(cpu(c), cpu(baseline)),
  'main thread µs/request': mainCpu(c).toFixed(0),
  'main thread vs (a)': c === baseline ? '' : versus(mainCpu(c), mainCpu(baseline)),
  'spans/request': perRequest(c, 'spans'),
  'OTLP trace bytes/request': perRequest(c, 'bytes'),
  'OTLP logs+metrics bytes/request': otherBytes(c)
}))))
console.log('')
const perRound = (m: Map<Config, number[]>, c: Config): string => (m.get(c) ?? []).map((x) => x.toFixed(0)).join(', ')
for (const c of configs.slice(1)) console.log(`${c.label}: throughput lost per round ${losses(c).map(pct).join(', ')}${c.traced ? ` (against (b): ${losses(c, statisticsOnly).map(pct).join(', ')})` : ''}; main-thread CPU/request per round ${perRound(mainPerRequest, c)} (a: ${perRound(mainPerRequest, baseline)})`)
const shipped = configs[2] as Config
const full = configs[3] as Config
console.log('')
// Against (a), the statistics' cost is in the loss too; against (b), it is tracing's alone.
for (const [c, name, bound, met] of [[shipped, '(c) shipped sampling', 'at most 3%', (x: number) => x <= 0.03], [full, '(d) 100% sampling', 'under 10%', (x: number) => x < 0.1]] as const) {
  const a = median(losses(c))
  const b = median(losses(c, statisticsOnly))
  console.log(`target ${name}: loss ${pct(a)} against (a), ${pct(b)} against (b), ${bound}: ${met(a) ? 'met' : 'not met'} against (a), ${met(b) ? 'met' : 'not met'} against (b)`)
}
