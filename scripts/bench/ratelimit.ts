import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivateRedis, type PrivateRedis } from '../../test/helpers/private-redis.js'
import { median, pinning, startService, table } from './lib.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '100' },
    // Even: every other round runs in reverse, and both orders weigh the same in the median.
    rounds: { type: 'string', default: '8' },
    clients: { type: 'string', default: '1000' },
    // The servers on the last CPU, the bench (its load generator) and its Redis on the others. Off by default: on two
    // CPUs the one left to the load generator and Redis bounds the throughput (server cores busy 0.76-0.92), and a
    // server that is not saturated finds fewer requests per turn of its event loop, so ours batches fewer decisions
    // per script call; a regime of its own (docs/benchmarks.md).
    pin: { type: 'boolean', default: false }
  },
  allowNegative: true
})
// Pinned before the bench's Redis starts, which inherits the bench's CPUs.
const pinned = args.pin ? pinning() : undefined
const serverCpu = pinned?.servers
if (pinned !== undefined) execFileSync('taskset', ['-a', '-p', '-c', pinned.bench, String(process.pid)], { stdio: 'ignore' })
// A Redis of the bench's own unless REDIS_URL names one: then its command counts and CPU are the bench's alone.
const privateRedis: PrivateRedis | undefined = process.env.REDIS_URL ? undefined : await startPrivateRedis()
const REDIS_URL = process.env.REDIS_URL ?? (privateRedis as PrivateRedis).url
const duration = Number(args.duration)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const clients = Number(args.clients)
const log = (m: string): void => console.log(`[bench:ratelimit] ${m}`)
const redis = new Redis(REDIS_URL)

/** Commands Redis executed (those inside scripts included) and script calls (ours decides a batch of requests in one). */
async function commandCalls (): Promise<{ commands: number, trips: number }> {
  const info = await redis.info('commandstats')
  const commands = [...info.matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
  const trips = [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
  return { commands, trips }
}

/** CPU seconds Redis has used (user + system, its own INFO): a Redis shared with other work counts theirs too. */
async function redisCpuSeconds (): Promise<number> {
  const info = await redis.info('cpu')
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0)
}

const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100)

/**
 * CPU seconds the server process has used (user + system, from /proc): its CPU per request depends far less on
 * what else the machine runs than its requests per second do.
 */
function cpuSeconds (pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid ?? 0}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}

async function run (url: string, seconds: number): Promise<{ rps: number, p99: number, total: number, non2xx: number, errors: number }> {
  let n = 0
  const r = await autocannon({
    url: `${url}/hello`,
    connections,
    duration: seconds,
    requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-client': `client-${n++ % clients}` } }) }]
  })
  return { rps: r.requests.average, p99: r.latency.p99, total: r.requests.total, non2xx: r.non2xx, errors: r.errors + r.timeouts }
}

const OURS = 'ours (Redis, exact sliding window)'
const THEIRS = '@fastify/rate-limit (Redis store, fixed window)'
const THEIRS_PIPELINED = '@fastify/rate-limit, ioredis auto-pipelining'
const configs: Record<string, Record<string, string>> = {
  'no limiter': { BENCH_LIMITER: 'none' },
  // BENCH_HEADERS=both: ours with its default five rate-limit fields instead of the three the other sends.
  [OURS]: { BENCH_LIMITER: 'ours', BENCH_HEADERS: process.env.BENCH_HEADERS ?? 'x-ratelimit' },
  [THEIRS]: { BENCH_LIMITER: 'fastify' },
  // The same store with its client batching the commands of one tick into one write: the anchor at its best.
  [THEIRS_PIPELINED]: { BENCH_LIMITER: 'fastify', BENCH_AUTOPIPELINING: '1' }
}
const services = Object.fromEntries(await Promise.all(Object.entries(configs).map(async ([name, env]) =>
  [name, await startService('dist/scripts/bench/ratelimit-server.js', { ...env, REDIS_URL }, await freePort(), [], serverCpu)] as const)))
// One key's size, read right after a round of its limiter: by the end of the run a window (10 s) may have expired it.
const keySize = { ours: { bytes: 0, members: 0 }, theirs: 0 }
async function noteKeySizes (name: string): Promise<void> {
  if (name === OURS) {
    const key = (await redis.keys('bench-ours:*'))[0]
    if (key) keySize.ours = { bytes: Number(await redis.memory('USAGE', key)), members: await redis.llen(key) }
  } else if (name === THEIRS) {
    const key = (await redis.keys('bench-fastify:*'))[0]
    if (key) keySize.theirs = Number(await redis.memory('USAGE', key))
  }
}
const results: Record<string, Array<{ rps: number, p99: number, cpuUs: number, redisCpuUs: number, callsPerRequest: number, tripsPerRequest: number, non2xx: number, errors: number }>> = {}
try {
  for (let round = 1; round <= rounds; round++) {
    // Every other round in reverse order: ours and the auto-pipelined store, two apart, take each other's place.
    for (const name of round % 2 === 1 ? Object.keys(configs) : Object.keys(configs).reverse()) {
      const service = services[name]
      if (!service) continue
      await run(service.url, 1)
      const before = await commandCalls()
      const cpu = cpuSeconds(service.child.pid)
      const redisCpu = await redisCpuSeconds()
      const r = await run(service.url, duration)
      const cpuUs = (cpuSeconds(service.child.pid) - cpu) / Math.max(1, r.total) * 1e6
      const redisCpuUs = (await redisCpuSeconds() - redisCpu) / Math.max(1, r.total) * 1e6
      const after = await commandCalls()
      await noteKeySizes(name)
      // The three INFO calls between the two readings count as commands.
      const calls = after.commands - before.commands - 3
      const trips = after.trips - before.trips
      ;(results[name] ??= []).push({ rps: r.rps, p99: r.p99, cpuUs, redisCpuUs, callsPerRequest: calls / r.total, tripsPerRequest: trips / r.total, non2xx: r.non2xx, errors: r.errors })
      log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, server cores busy ${(cpuUs * r.rps / 1e6).toFixed(2)}, ${cpuUs.toFixed(1)} µs server CPU and ${redisCpuUs.toFixed(1)} µs Redis CPU per request, ${(trips / r.total).toFixed(2)} script calls and ${(calls / r.total).toFixed(2)} Redis commands per request`)
    }
  }
} catch (error) {
  await privateRedis?.destroy()
  throw error
} finally {
  await Promise.all(Object.values(services).map((s) => s.stop()))
}

const med = (name: string, f: 'rps' | 'p99' | 'cpuUs' | 'redisCpuUs' | 'callsPerRequest' | 'tripsPerRequest'): number => median((results[name] ?? []).map((r) => r[f]))
const rows = Object.keys(configs).map((name) => ({
  configuration: name,
  'req/s': med(name, 'rps').toFixed(0),
  'p99 ms': med(name, 'p99').toFixed(0),
  'server µs CPU / request': med(name, 'cpuUs').toFixed(1),
  'Redis µs CPU / request': med(name, 'redisCpuUs').toFixed(1),
  'script calls / request': med(name, 'tripsPerRequest').toFixed(2),
  'Redis commands / request (inside scripts too)': med(name, 'callsPerRequest').toFixed(2),
  'non-2xx': (results[name] ?? []).reduce((n, r) => n + r.non2xx + r.errors, 0)
}))
const ours = med(OURS, 'rps')
const theirs = med(THEIRS, 'rps')
const theirsPipelined = med(THEIRS_PIPELINED, 'rps')
const none = med('no limiter', 'rps')
console.log(`\nGET /hello, ${clients} clients, autocannon ${connections} connections, ${duration} s x ${rounds} rounds interleaved${serverCpu !== undefined ? `, the servers alone on CPU ${serverCpu}` : ''}, medians:\n`)
console.log(table(rows))
const wins = (results[OURS] ?? []).filter((r, i) => r.rps >= (results[THEIRS_PIPELINED]?.[i]?.rps ?? Infinity)).length
console.log(`\nours / @fastify/rate-limit = ${(ours / theirs).toFixed(2)} (target >= 0.95); ours / @fastify/rate-limit auto-pipelined = ${(ours / theirsPipelined).toFixed(2)} (at or above it in ${wins} of ${rounds} rounds); ours / no limiter = ${(ours / none).toFixed(2)}`)
const limiterCpu = (name: string): number => med(name, 'cpuUs') - med('no limiter', 'cpuUs')
console.log(`server CPU per request the limiter adds over no limiter: ours ${limiterCpu(OURS).toFixed(1)} µs, @fastify/rate-limit ${limiterCpu(THEIRS).toFixed(1)} µs, auto-pipelined ${limiterCpu(THEIRS_PIPELINED).toFixed(1)} µs`)
// Server and Redis CPU per request together, round by round: the load-independent side of the comparison.
const totalCpu = (name: string, i: number): number => (results[name]?.[i]?.cpuUs ?? NaN) + (results[name]?.[i]?.redisCpuUs ?? NaN)
const cpuRatios = Array.from({ length: rounds }, (_, i) => totalCpu(THEIRS_PIPELINED, i) / totalCpu(OURS, i))
const cheaper = cpuRatios.filter((x) => x >= 1).length
console.log(`server + Redis CPU per request: ours ${(med(OURS, 'cpuUs') + med(OURS, 'redisCpuUs')).toFixed(1)} µs, auto-pipelined ${(med(THEIRS_PIPELINED, 'cpuUs') + med(THEIRS_PIPELINED, 'redisCpuUs')).toFixed(1)} µs; auto-pipelined / ours per round: ${cpuRatios.map((x) => x.toFixed(2)).join(' ')} (ours as cheap or cheaper in ${cheaper} of ${rounds} rounds)`)
console.log(`bytes per key: ours ${keySize.ours.bytes} (a list holding ${keySize.ours.members} request times), @fastify/rate-limit ${keySize.theirs} (one counter)`)
await redis.del(...(await redis.keys('bench-ours:*')), ...(await redis.keys('bench-fastify:*'))).catch(() => 0)
await redis.quit()
await privateRedis?.destroy()
mkdirSync(join(projectRoot, 'bench-results'), { recursive: true })
writeFileSync(join(projectRoot, 'bench-results', 'ratelimit.json'), JSON.stringify({ when: new Date().toISOString(), args, rows, ourBytes: keySize.ours.bytes, ourMembers: keySize.ours.members, theirBytes: keySize.theirs }, null, 2))
