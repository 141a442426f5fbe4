import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { median, processCpuMs, table, type Service } from './lib.js'
import { startTracingServices } from './tracing-services.js'
import { type TracingConfig, tracingConfigs } from './tracing-setup.js'

// `npm run bench:tracing-paired [-- --sets 3 --cycles 40 --window 1.5 --only a,b,c,d]`: bench:tracing's four
// configurations, compared in short windows instead of rounds. The processes of every configuration run side by side
// (pinned on the same CPU), and the load goes to one of them at a time, a window each, in a new order every cycle. A
// machine whose speed drifts over seconds (on some hosts the CPU time of one fixed loop moves by 13% from one second
// to the next, and bench:tracing's rounds of one configuration spread over 50 points) then moves every configuration
// of a cycle alike, and the comparison is the median of the cycles' own ratios.
const { values: args } = parseArgs({
  options: {
    // Sets of processes, one process per configuration in each: two processes of one build differ by a few percent
    // for as long as they live (memory layout, JIT decisions), which more cycles of the same processes never average.
    sets: { type: 'string', default: '3' },
    cycles: { type: 'string', default: '40' },
    window: { type: 'string', default: '1.5' },
    warmup: { type: 'string', default: '4' },
    connections: { type: 'string', default: '50' },
    only: { type: 'string', default: 'a,b,c,d' },
    pin: { type: 'boolean', default: availableParallelism() >= 2 }
  },
  allowNegative: true
})
const log = (m: string): void => console.log(`[bench:tracing-paired] ${m}`)
const configs = tracingConfigs.filter((c) => args.only.split(',').includes(c.letter))
if (configs.length < 2) throw new Error('--only: name two configurations or more (a, b, c, d; e on demand)')
const services = await startTracingServices('bench:tracing-paired', configs, { pin: args.pin ?? false, connections: Number(args.connections) }, log)

/** Per configuration, one entry per cycle of every set: its window's throughput. */
const windows = new Map<TracingConfig, number[]>(configs.map((c) => [c, []]))
/** A process's CPU per request over a whole cycle (all its threads): exports that run after its window count too. */
const cycleCpu = new Map<TracingConfig, number[]>(configs.map((c) => [c, []]))
const served = new Map<TracingConfig, number>(configs.map((c) => [c, 0]))
let faults = 0
let running: Service[] = []
try {
  for (let set = 1; set <= Number(args.sets); set++) {
    running = []
    for (const config of configs) running.push(await services.start(config))
    const byConfig = new Map(configs.map((c, i) => [c, running[i] as Service]))
    // Warm-up: the hot leads into each cache, and V8's optimizing of each process.
    for (const [config, service] of byConfig) served.set(config, (served.get(config) ?? 0) + (await services.load(service.url, Number(args.warmup))).requests)
    for (let cycle = 0; cycle < Number(args.cycles); cycle++) {
      // Every configuration takes every place in the order in turn, forwards and backwards.
      const turned = configs.map((_c, i) => configs[(i + cycle) % configs.length] as TracingConfig)
      const order = cycle % 2 === 0 ? turned : turned.reverse()
      const before = new Map(configs.map((c) => [c, processCpuMs(byConfig.get(c) as Service) ?? NaN]))
      const counts = new Map<TracingConfig, number>()
      for (const config of order) {
        const r = await services.load((byConfig.get(config) as Service).url, Number(args.window))
        if (r.non2xx > 0) throw new Error(`${config.label}: ${r.non2xx} non-2xx answers (${r.statuses})`)
        faults += r.errors
        counts.set(config, r.requests)
        windows.get(config)?.push(r.requests / Number(args.window))
      }
      for (const config of configs) {
        const n = counts.get(config) ?? NaN
        cycleCpu.get(config)?.push(((processCpuMs(byConfig.get(config) as Service) ?? NaN) - (before.get(config) ?? NaN)) * 1000 / n)
        served.set(config, (served.get(config) ?? 0) + n)
      }
    }
    for (const [config, service] of byConfig) {
      const counted = await services.queriesCounted(service)
      if (config.statistics !== (counted > 0)) throw new Error(`${config.label}: query statistics counted ${counted} queries`)
      // A service exports its queued spans as it shuts down, so every span is counted before the sinks close.
      await service.stop()
      services.sinks.get(config)?.spans()
    }
    running = []
    log(`set ${set} of ${args.sets}: ${args.cycles} cycles done`)
  }
} finally {
  for (const service of running) await service.stop()
  await services.close()
}

const pct = (x: number): string => `${x >= 0 ? '' : '-'}${(Math.abs(x) * 100).toFixed(1)}%`
const quartiles = (xs: number[]): [number, number] => {
  const s = [...xs].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))] as number
  return [at(0.25), at(0.75)]
}
/** Per cycle, how much less `c` served than `base` in the same cycle (or how much more CPU a request took). */
const losses = (c: TracingConfig, base: TracingConfig): number[] => (windows.get(c) ?? []).map((rps, i) => 1 - rps / ((windows.get(base) ?? [])[i] ?? NaN))
const extraCpu = (c: TracingConfig, base: TracingConfig): number[] => (cycleCpu.get(c) ?? []).map((x, i) => x / ((cycleCpu.get(base) ?? [])[i] ?? NaN) - 1)
const spread = (xs: number[]): string => {
  const [q1, q3] = quartiles(xs)
  return `${pct(median(xs))} (quartiles ${pct(q1)} .. ${pct(q3)})`
}
const perSet = (xs: number[]): string => Array.from({ length: Number(args.sets) }, (_s, i) => pct(median(xs.slice(i * Number(args.cycles), (i + 1) * Number(args.cycles))))).join(', ')
const [first] = configs as [TracingConfig]
const statisticsOnly = configs.find((c) => c.letter === 'b')
console.log(`\nGET /api/v1/leads/:id (cached) and /api/v1/leads/:id/activities (PostgreSQL) in turn, cache and rate limiter on Redis, autocannon ${args.connections} connections${services.pinned ? `, every api process on CPU ${services.apiCpu}` : ''}; ${args.sets} sets of processes, ${args.cycles} cycles each, a ${args.window} s window per configuration and cycle after ${args.warmup} s of warm-up; medians over the cycles of their own ratios:\n`)
console.log(table(configs.map((c) => ({
  configuration: c.label,
  'req/s (median window)': median(windows.get(c) ?? []).toFixed(0),
  [`loss vs ${first.label.slice(0, 3)}`]: c === first ? '' : spread(losses(c, first)),
  [`loss vs ${first.label.slice(0, 3)}, per set`]: c === first ? '' : perSet(losses(c, first)),
  'loss vs (b)': statisticsOnly && c.traced ? spread(losses(c, statisticsOnly)) : '',
  'loss vs (b), per set': statisticsOnly && c.traced ? perSet(losses(c, statisticsOnly)) : '',
  'CPU µs/request over a cycle': median(cycleCpu.get(c) ?? []).toFixed(0),
  [`CPU vs ${first.label.slice(0, 3)}`]: c === first ? '' : spread(extraCpu(c, first)),
  'CPU vs (b)': statisticsOnly && c.traced ? spread(extraCpu(c, statisticsOnly)) : '',
  'spans/request': c.traced ? ((services.sinks.get(c)?.spans() ?? 0) / (served.get(c) ?? 1)).toFixed(2) : '0'
}))))
console.log(`\ntimeouts and errors: ${faults}`)
// Two readings of each target. By throughput: the windows' requests. By CPU: the process's CPU over a cycle per
// request of its window, its work after the window included; the api, alone on its CPU and saturated, serves in
// inverse proportion to it. A traced process's span exporter sends what its window queued up to 5 s later
// (OTEL_BSP_SCHEDULE_DELAY), often in another configuration's window, on the same CPU: that work lowers the other's
// throughput, not its own, so the throughput reading flatters the traced configurations and the CPU one does not.
const targets = [['c', '(c) shipped sampling', 'at most 3%', 0.03, true], ['d', '(d) 100% sampling', 'under 10%', 0.1, false]] as const
for (const [letter, name, bound, limit, inclusive] of targets) {
  const c = configs.find((x) => x.letter === letter)
  if (c === undefined) continue
  const met = (loss: number): string => (inclusive ? loss <= limit : loss < limit) ? 'met' : 'not met'
  const against = [first, statisticsOnly].filter((x, i, all): x is TracingConfig => x !== undefined && x !== c && all.indexOf(x) === i)
  for (const base of against) {
    const loss = median(losses(c, base))
    const cpu = median(extraCpu(c, base))
    // A CPU per request (1 + x) times the base's serves 1 / (1 + x) of its requests.
    const cpuLoss = 1 - 1 / (1 + cpu)
    console.log(`target ${name}, ${bound}, against ${base.label.slice(0, 3)}: by throughput, loss ${pct(loss)}: ${met(loss)}; by CPU per request, ${pct(cpu)} more, a loss of ${pct(cpuLoss)}: ${met(cpuLoss)}`)
  }
}
// With (e): how much of the shipped sampling's cost is paid before anything is sampled, and how much its sampled
// tenth adds.
const shipped = configs.find((c) => c.letter === 'c')
const unsampled = configs.find((c) => c.letter === 'e')
if (shipped && unsampled && statisticsOnly) {
  console.log(`(c) split by CPU per request: tracing on with nothing sampled (e) ${pct(median(extraCpu(unsampled, statisticsOnly)))} over (b); the sampled tenth, (c) over (e), ${pct(median(extraCpu(shipped, unsampled)))}; by throughput, losses ${pct(median(losses(unsampled, statisticsOnly)))} and ${pct(median(losses(shipped, unsampled)))}`)
}
