import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { freePort } from '../../test/helpers/ports.js'
import { cpuPerRequest, load, median, perfReport, processCpuMs, recordPerf, requirePerf, startService, table } from './lib.js'
import { seededSchema } from './seeded-schema.js'

/**
 * `npm run bench:next-tick [-- --processes 6]`: whether a process of the api runs Node's `process.nextTick` on V8's
 * slow path, with PostgreSQL's parser loaded while the app registers (the query statistics plugin loads it) and
 * loaded before the app is built (`preparePlatform`, as the services ship). On the slow path TurboFan compiles
 * `nextTick` without a fast path for its tick object's symbol keys, and each call defines them through the runtime
 * (`Runtime_DefineKeyedOwnPropertyInLiteral`), for the life of the process. Each build in `--processes` new
 * processes, taken in turn, each loaded on bench:cache's cached route (GET /api/v1/leads, rate limiter off) for
 * `--warmup` seconds, then sampled by `perf record` (a CPU clock) for `--duration` seconds of the same load.
 */
const { values: args } = parseArgs({
  options: {
    processes: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    connections: { type: 'string', default: '100' }
  }
})
requirePerf('bench:next-tick')
const log = (m: string): void => console.log(`[bench:next-tick] ${m}`)
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SCHEMA = 'bench_cache'
const SLOW_CALL = 'Runtime_DefineKeyedOwnPropertyInLiteral'
// A share of the process's samples, which moves less with the host than microseconds do: off the slow path the call
// took next to none of them (0.00 µs per request), on it about 1% (0.59-1.02 µs of 68-101 µs per request).
const SLOW_AT_SHARE = 0.3
const builds = [
  { name: 'parser loaded while the app registers', entry: 'dist/scripts/bench/api-unprepared.js' },
  { name: 'parser loaded first (as shipped)', entry: 'dist/services/api/main.js' }
]

const pool = await seededSchema(DATABASE_URL, SCHEMA, 10_000, log)
const { key } = await new ApiKeyStore(pool).mint('bench:next-tick', ['leads:read'])
await pool.close()
const headers = { 'x-api-key': key }
const dir = mkdtempSync(join(tmpdir(), 'bench-next-tick-'))
const rows: Array<Record<string, string>> = []
const results = builds.map(() => ({ slow: 0, cpu: [] as number[] }))
try {
  for (let i = 0; i < Number(args.processes) * builds.length; i++) {
    const b = i % builds.length
    const build = builds[b] as typeof builds[number]
    const env = { DATABASE_URL, DB_SCHEMA: SCHEMA, REDIS_URL, CACHE_PREFIX: `bench:${process.pid}:nt${i}:`, RATE_LIMIT_ENABLED: 'false', CACHE_ENABLED: 'true' }
    const service = await startService(build.entry, env, await freePort())
    const out = join(dir, `${i}.data`)
    let requests = 0
    let cpuUs = Number.NaN
    try {
      const url = `${service.url}/api/v1/leads`
      await load(url, Number(args.connections), Number(args.warmup), headers)
      const perf = recordPerf(service.child.pid as number, out)
      try {
        // perf's attaching takes a moment: the load starts after it, so the profile spans the whole load.
        await sleep(300)
        const before = processCpuMs(service)
        const r = await load(url, Number(args.connections), Number(args.duration), headers)
        const after = processCpuMs(service)
        if (r.errors + r.non2xx > 0 || r.requests === 0) throw new Error(`${build.name}: ${r.requests} requests, ${r.errors} errors, ${r.non2xx} not 2xx (${r.statuses}): not the cached route's load`)
        requests = r.requests
        if (before !== undefined && after !== undefined) cpuUs = (after - before) * 1000 / requests
      } finally {
        await perf.stop()
      }
    } finally {
      await service.stop()
    }
    const report = perfReport(out)
    const line = report.split('\n').find((l) => l.includes(SLOW_CALL))
    const share = line === undefined ? 0 : Number(/([\d.]+)%/.exec(line)?.[1] ?? Number.NaN)
    // perf sampled a little longer than the load it is divided by (300 ms before it): an upper bound.
    const slowUs = [...cpuPerRequest(report, requests)].filter(([name]) => name.includes(SLOW_CALL)).reduce((sum, [, us]) => sum + us, 0)
    if (!Number.isFinite(share)) throw new Error(`${build.name}: perf's report of ${SLOW_CALL} could not be read: ${line ?? ''}`)
    const slow = share >= SLOW_AT_SHARE
    const result = results[b] as typeof results[number]
    if (slow) result.slow++
    result.cpu.push(cpuUs)
    rows.push({ build: build.name, process: String(Math.floor(i / builds.length) + 1), 'CPU µs/request': cpuUs.toFixed(1), [`${SLOW_CALL} µs/request`]: slowUs.toFixed(2), 'share of samples': `${share.toFixed(2)}%`, 'slow path': slow ? 'yes' : 'no' })
    log(`${build.name}, process ${Math.floor(i / builds.length) + 1}: ${cpuUs.toFixed(1)} µs of CPU per request, ${slowUs.toFixed(2)} (${share.toFixed(2)}% of the samples) in ${SLOW_CALL}${slow ? ': slow path' : ''}`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
console.log(`\nGET /api/v1/leads from the cache, autocannon ${args.connections} connections, ${args.warmup} s of warm-up, then ${args.duration} s sampled by perf record -F 1999 (a CPU clock); each process's CPU per request from /proc over those ${args.duration} s:\n`)
console.log(table(rows))
console.log('')
builds.forEach((build, b) => {
  const result = results[b] as typeof results[number]
  console.log(`${build.name}: ${result.slow} of ${args.processes} processes on the slow path (${SLOW_CALL} ${SLOW_AT_SHARE}% of the samples or more); median CPU ${median(result.cpu).toFixed(1)} µs per request`)
})
