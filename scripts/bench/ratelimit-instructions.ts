import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { callgrindTotal } from './callgrind.js'
import { table } from './lib.js'

// Instructions the server executes per request, counted by callgrind: unlike requests per second or CPU time they
// do not depend on what else the machine runs. Each server runs under `valgrind --tool=callgrind` with counting
// off, is warmed (so that most of its code is compiled), and counts only while it answers the measured requests.
// The servers run one after the other against a Redis of the bench's own. Two limits: callgrind counts user-space
// instructions only (the kernel's work for a system call is not in them: fewer, larger writes to Redis or to the
// socket show in /proc CPU time, which `bench:ratelimit` prints, not here), and a batching limiter's count depends
// on how many requests each turn of the event loop finds, so compare configurations measured under the same load.
const { values: args } = parseArgs({
  options: {
    warmup: { type: 'string', default: '4000' },
    requests: { type: 'string', default: '4000' },
    connections: { type: 'string', default: '20' },
    clients: { type: 'string', default: '1000' },
    only: { type: 'string' }
  }
})
const warmup = Number(args.warmup)
const requests = Number(args.requests)
const connections = Number(args.connections)
const clients = Number(args.clients)
const log = (m: string): void => console.log(`[bench:ratelimit:instructions] ${m}`)

const OURS = 'ours (Redis, exact sliding window)'
const THEIRS_PIPELINED = '@fastify/rate-limit, ioredis auto-pipelining'
const configs: Record<string, Record<string, string>> = {
  'no limiter': { BENCH_LIMITER: 'none' },
  // BENCH_HEADERS=both: ours with its default five rate-limit fields instead of the three the other sends.
  [OURS]: { BENCH_LIMITER: 'ours', BENCH_HEADERS: process.env.BENCH_HEADERS ?? 'x-ratelimit' },
  '@fastify/rate-limit (Redis store, fixed window)': { BENCH_LIMITER: 'fastify' },
  [THEIRS_PIPELINED]: { BENCH_LIMITER: 'fastify', BENCH_AUTOPIPELINING: '1' }
}
const chosen = args.only === undefined ? Object.keys(configs) : Object.keys(configs).filter((name) => args.only?.split(',').some((w) => name.includes(w)))

/** Answers of `amount` requests over `connections`, each naming one of `clients` identities. */
async function drive (url: string, amount: number): Promise<{ total: number, failed: number }> {
  let n = 0
  const r = await autocannon({
    url: `${url}/hello`,
    connections,
    amount,
    // Everything runs about 50 times slower under callgrind.
    timeout: 120,
    requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-client': `client-${n++ % clients}` } }) }]
  })
  return { total: r.requests.total, failed: r.non2xx + r.errors + r.timeouts }
}

async function measure (name: string, env: Record<string, string>, redisUrl: string, dir: string): Promise<{ perRequest: number, failed: number }> {
  const port = await freePort()
  const out = join(dir, `${name.replace(/[^a-z]+/gi, '-')}.out`)
  const child = spawn('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, join(projectRoot, 'dist/scripts/bench/ratelimit-server.js')], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), REDIS_URL: redisUrl, ...env },
    stdio: ['ignore', 'ignore', 'ignore']
  })
  const url = `http://127.0.0.1:${port}`
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`${name}: the server exited with ${child.exitCode}`)
      if (await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)) break
      if (i > 600) throw new Error(`${name}: the server did not start under valgrind in 5 minutes`)
      await sleep(500)
    }
    await drive(url, warmup)
    const pid = String(child.pid)
    execFileSync('callgrind_control', ['-i', 'on', pid], { stdio: 'ignore' })
    const r = await drive(url, requests)
    execFileSync('callgrind_control', ['-i', 'off', pid], { stdio: 'ignore' })
    execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore' })
    // The dump of the counted part is the first numbered file.
    const dumped = readdirSync(dir).filter((f) => f.startsWith(`${name.replace(/[^a-z]+/gi, '-')}.out.`)).sort()[0]
    if (!dumped) throw new Error(`${name}: no callgrind dump`)
    return { perRequest: callgrindTotal(join(dir, dumped)) / Math.max(1, r.total), failed: r.failed }
  } finally {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

const redis = await startPrivateRedis()
const dir = mkdtempSync(join(tmpdir(), 'bench-callgrind-'))
const perRequest: Record<string, number> = {}
const rows: Array<Record<string, string | number>> = []
try {
  for (const name of chosen) {
    log(`${name}: starting under callgrind`)
    const m = await measure(name, configs[name] as Record<string, string>, redis.url, dir)
    perRequest[name] = m.perRequest
    log(`${name}: ${Math.round(m.perRequest)} instructions per request`)
    rows.push({ configuration: name, 'server instructions / request': Math.round(m.perRequest), 'failed requests': m.failed })
  }
} finally {
  await redis.destroy()
  rmSync(dir, { recursive: true, force: true })
}
console.log(`\nGET /hello, ${clients} clients, ${connections} connections, ${warmup} requests of warm-up, then ${requests} counted (callgrind, the server process only):\n`)
console.log(table(rows))
const ours = perRequest[OURS]
const theirs = perRequest[THEIRS_PIPELINED]
if (ours !== undefined && theirs !== undefined) console.log(`\nauto-pipelined / ours, instructions per request = ${(theirs / ours).toFixed(2)} (above 1: ours executes fewer)`)
