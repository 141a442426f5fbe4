import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { projectRoot } from '../../services/domain/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { median, startService, table } from './lib.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '1000' }
  }
})
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const duration = Number(args.duration)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const clients = Number(args.clients)
const log = (m: string): void => console.log(`[bench:ratelimit] ${m}`)
const redis = new Redis(REDIS_URL)

/** Commands Redis executed (those inside scripts included) and round trips (script calls). */
async function commandCalls (): Promise<{ commands: number, trips: number }> {
  const info = await redis.info('commandstats')
  const commands = [...info.matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
  const trips = [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
  return { commands, trips }
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

const configs = {
  'no limiter': 'none',
  'ours (Redis, exact sliding window)': 'ours',
  '@fastify/rate-limit (Redis store, fixed window)': 'fastify'
} as const
const services = Object.fromEntries(await Promise.all(Object.entries(configs).map(async ([name, limiter]) =>
  [name, await startService('dist/scripts/bench/ratelimit-server.js', { BENCH_LIMITER: limiter, REDIS_URL }, await freePort())] as const)))
const results: Record<string, Array<{ rps: number, p99: number, callsPerRequest: number, tripsPerRequest: number, non2xx: number, errors: number }>> = {}
try {
  for (let round = 1; round <= rounds; round++) {
    for (const name of Object.keys(configs)) {
      const service = services[name]
      if (!service) continue
      await run(service.url, 1)
      const before = await commandCalls()
      const r = await run(service.url, duration)
      const after = await commandCalls()
      // INFO itself counts as one command.
      const calls = after.commands - before.commands - 1
      const trips = after.trips - before.trips
      ;(results[name] ??= []).push({ rps: r.rps, p99: r.p99, callsPerRequest: calls / r.total, tripsPerRequest: trips / r.total, non2xx: r.non2xx, errors: r.errors })
      log(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, ${(trips / r.total).toFixed(2)} round trips and ${(calls / r.total).toFixed(2)} Redis commands per request`)
    }
  }
} finally {
  await Promise.all(Object.values(services).map((s) => s.stop()))
}

const ourKey = (await redis.keys('bench-ours:*'))[0]
const theirKey = (await redis.keys('bench-fastify:*'))[0]
const ourBytes = ourKey ? Number(await redis.memory('USAGE', ourKey)) : 0
const ourMembers = ourKey ? await redis.zcard(ourKey) : 0
const theirBytes = theirKey ? Number(await redis.memory('USAGE', theirKey)) : 0
const med = (name: string, f: 'rps' | 'p99' | 'callsPerRequest' | 'tripsPerRequest'): number => median((results[name] ?? []).map((r) => r[f]))
const rows = Object.keys(configs).map((name) => ({
  configuration: name,
  'req/s': med(name, 'rps').toFixed(0),
  'p99 ms': med(name, 'p99').toFixed(0),
  'Redis round trips / request': med(name, 'tripsPerRequest').toFixed(2),
  'Redis commands / request (inside scripts too)': med(name, 'callsPerRequest').toFixed(2),
  'non-2xx': (results[name] ?? []).reduce((n, r) => n + r.non2xx + r.errors, 0)
}))
const ours = med('ours (Redis, exact sliding window)', 'rps')
const theirs = med('@fastify/rate-limit (Redis store, fixed window)', 'rps')
const none = med('no limiter', 'rps')
console.log(`\nGET /hello, ${clients} clients, autocannon ${connections} connections, ${duration} s x ${rounds} rounds interleaved, medians:\n`)
console.log(table(rows))
console.log(`\nours / @fastify/rate-limit = ${(ours / theirs).toFixed(2)} (target >= 0.95); ours / no limiter = ${(ours / none).toFixed(2)}`)
console.log(`bytes per key: ours ${ourBytes} (a sorted set holding ${ourMembers} requests of the trailing window), @fastify/rate-limit ${theirBytes} (one counter)`)
await redis.del(...(await redis.keys('bench-ours:*')), ...(await redis.keys('bench-fastify:*'))).catch(() => 0)
await redis.quit()
mkdirSync(join(projectRoot, 'bench-results'), { recursive: true })
writeFileSync(join(projectRoot, 'bench-results', 'ratelimit.json'), JSON.stringify({ when: new Date().toISOString(), args, rows, ourBytes, ourMembers, theirBytes }, null, 2))
