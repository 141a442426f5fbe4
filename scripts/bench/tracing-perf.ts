import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivatePostgres } from '../../test/helpers/private-postgres.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { projectRoot } from '../../services/platform/paths.js'
import { perfReport, recordPerf, requirePerf, startService, table } from './lib.js'
import { functionOf, profiledSymbols, sumBy } from './perf-profile.js'
import { startOtlpSink } from './otlp-sink.js'
import { apiEnvironment, driveTracingRequests, prepareTracingBench, tracingConfigs } from './tracing-setup.js'

/**
 * What share of the api's CPU a few native functions take when it runs without valgrind: each configuration of
 * bench:tracing in `--runs` new processes, each loaded with bench:tracing-instructions' requests (a cached lead and a
 * lead's activities in turn) and sampled by `perf record` (a CPU clock, so it needs no hardware counters) after the
 * warm-up. It checks whether what callgrind counted in one process (`bench:tracing-instructions`, which names the
 * function) is the api's or valgrind's: under valgrind V8 compiles code at other moments relative to the work it runs.
 * `--functions N` starts the api with `--perf-basic-prof` (JavaScript functions named) and prints, for each
 * configuration after the first, the N functions whose CPU per request differs most from the first's (process 1 of
 * each), in microseconds: where a configuration's extra CPU goes, without valgrind's distortions.
 */
const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'c,d' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '6000' },
    requests: { type: 'string', default: '24000' },
    concurrency: { type: 'string', default: '8' },
    // Native symbols as perf names them: a substring of each.
    symbols: { type: 'string', default: 'Runtime_DefineKeyedOwnPropertyInLiteral,Builtins_CloneObjectIC_Slow' },
    functions: { type: 'string', default: '0' }
  }
})
requirePerf('bench:tracing-perf')
const log = (m: string): void => console.log(`[bench:tracing-perf] ${m}`)
const symbols = args.symbols.split(',')
const postgres = await startPrivatePostgres()
const redisServer = await startPrivateRedis()
const dir = mkdtempSync(join(tmpdir(), 'bench-tracing-perf-'))
const rows: Array<Record<string, string>> = []
const functions = Number(args.functions)
/** Per configuration (process 1): CPU microseconds per request by symbol, from perf's CPU-clock samples. */
const profiles: Array<{ label: string, perRequest: Map<string, number> }> = []
try {
  const { ids, key } = await prepareTracingBench('bench:tracing-perf', postgres.url)
  for (const config of tracingConfigs.filter((c) => args.only.split(',').includes(c.letter))) {
    for (let run = 1; run <= Number(args.runs); run++) {
      const sink = config.traced ? await startOtlpSink() : undefined
      const prefix = `bench-tracing-perf-${process.pid}:${config.letter}${run}`
      const env = { ...apiEnvironment, DATABASE_URL: postgres.url, REDIS_URL: redisServer.url, CACHE_PREFIX: `${prefix}:c:`, RATE_LIMIT_PREFIX: `${prefix}:rl:`, ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}), ...config.env }
      const api = await startService('dist/services/api/main.js', env, await freePort(), [...(functions > 0 ? ['--perf-basic-prof'] : []), '--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')])
      const out = join(dir, `${config.letter}${run}.data`)
      try {
        const from = { sent: 0 }
        const drive = async (n: number): Promise<void> => { await driveTracingRequests(api.url, ids, key, n, Number(args.concurrency), from) }
        await drive(Number(args.warmup))
        const perf = recordPerf(api.child.pid as number, out)
        try {
          await drive(Number(args.requests))
        } finally {
          await perf.stop()
        }
      } finally {
        await api.stop()
        sink?.close()
      }
      const report = perfReport(out)
      const share = (symbol: string): string => {
        const line = report.split('\n').find((l) => l.includes(symbol))
        return line === undefined ? '0%' : (/([\d.]+%)/.exec(line)?.[1] ?? '?')
      }
      const samples = /# Samples: (\S+)/.exec(report)?.[1] ?? '?'
      // One row per JavaScript function whichever tier compiled it, paths relative to the project.
      if (functions > 0 && run === 1) profiles.push({ label: config.label, perRequest: sumBy(profiledSymbols(report, Number(args.requests)), (sym) => functionOf(sym.symbol, projectRoot)) })
      rows.push({ configuration: config.label, process: String(run), samples, ...Object.fromEntries(symbols.map((s) => [s, share(s)])) })
      log(`${config.label}, process ${run}: ${symbols.map((s) => `${s} ${share(s)}`).join(', ')} of ${samples} samples`)
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
  postgres.destroy()
  await redisServer.destroy()
}
console.log(`\nShare of the api's CPU samples (perf record -F 1999, a CPU clock) per process, after ${args.warmup} warm-up requests, over ${args.requests} requests, ${args.concurrency} in flight:\n`)
console.log(table(rows))
for (const profile of profiles.slice(1)) {
  const base = profiles[0]
  if (base === undefined) break
  const total = (p: Map<string, number>): number => [...p.values()].reduce((a, b) => a + b, 0)
  const names = new Set([...base.perRequest.keys(), ...profile.perRequest.keys()])
  const diffs = [...names].map((name) => ({ name, base: base.perRequest.get(name) ?? 0, this: profile.perRequest.get(name) ?? 0 }))
    .sort((x, y) => Math.abs(y.this - y.base) - Math.abs(x.this - x.base)).slice(0, functions)
  console.log(`\n${profile.label}: CPU per request ${total(profile.perRequest).toFixed(1)} µs against ${total(base.perRequest).toFixed(1)} in ${base.label}; the ${functions} functions that differ most (µs per request):\n`)
  console.log(table(diffs.map((d) => ({ function: d.name.slice(0, 120), [base.label.slice(0, 3)]: d.base.toFixed(2), [profile.label.slice(0, 3)]: d.this.toFixed(2), difference: (d.this - d.base).toFixed(2) }))))
}
