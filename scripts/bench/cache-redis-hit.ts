import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { Redis } from 'ioredis'
import { createCacheManager } from '@lead-chassis/plugins/cache'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { createBentoCache } from './bentocache.js'
import { callgrindTotal } from './callgrind.js'
import { functionCosts, readPerfMap, sumCosts, type FunctionCost } from './callgrind-functions.js'
import { median, table } from './lib.js'

// Instructions per Redis hit, which a busy machine does not move (bench:cache's ns/op rows do):
//   npm run bench:cache-redis-hit [-- --reads 3000 --warmup 10000 --in-flight 64 --rounds 3 --functions 25]
// Each way runs in a process of its own under `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes`,
// warms up uncounted (`--warmup` reads: under callgrind, 3,000 left part of ioredis in V8's baseline tier, and each
// way's count some 20k instructions higher), then counts `--reads` reads of a 5.7 KB page of 20 leads, local tiers
// off, auto-pipelining off (the client's default). The reads take 256 keys holding the page in turn, so the reads in
// flight ask different keys and each is a read of its own (ours shares one read among gets of one key asked together).
// Main thread only: V8's background threads move with the machine's load.
// Timers keep the wall clock, against which callgrind slows the process many times over: work done on an interval
// (ours flushes its hot-key counts every CACHE_HOT_KEYS_INTERVAL_MS) counts that much more per read than natively.
// `--functions N` also names the N functions (JavaScript by file, native by symbol) whose main-thread instructions per
// read differ most between ours and bentocache. It runs node with --perf-basic-prof, whose code-event logging adds to
// both counts (ours rose from about 272k to 294k per read in one run): read its table for where, the totals from a
// run without it.
const run = promisify(execFile)
const { values: args } = parseArgs({
  options: {
    child: { type: 'string' },
    reads: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '10000' },
    'in-flight': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    functions: { type: 'string', default: '0' }
  }
})
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const WAYS = ['raw GET + JSON.parse', 'ours: cache.get', 'bentocache get'] as const
type Way = typeof WAYS[number]

const lead = (i: number) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, firstName: 'Ann', lastName: 'Lee', email: `ann${i}@example.com`, phone: '(555) 010-2000', product: 'auto', state: 'CA', status: 'new', score: 50, source: 'web', createdAt: '2026-12-01T00:00:00.000Z', updatedAt: '2026-12-01T00:00:00.000Z' })
const value = { data: Array.from({ length: 20 }, (_, i) => lead(i)), nextCursor: null }

const KEYS = Array.from({ length: 256 }, (_, i) => `k${i}`)
let turn = 0
const nextKey = (): string => KEYS[turn++ % KEYS.length] as string

async function inFlight (n: number, concurrency: number, op: () => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < n) { next++; await op() } }))
}

/** One way's loop, counted by callgrind between `--instr=on` and the dump. */
async function child (way: Way, reads: number, concurrency: number, warmup: number): Promise<void> {
  const prefix = `bench-cache-redis-hit:${process.pid}:`
  let op: () => Promise<unknown>
  let close: () => Promise<void>
  if (way === 'raw GET + JSON.parse') {
    const redis = new Redis(REDIS_URL)
    await redis.mset(Object.fromEntries(KEYS.map((k) => [`${prefix}${k}`, JSON.stringify(value)])))
    op = async () => JSON.parse((await redis.get(`${prefix}${nextKey()}`)) ?? 'null')
    close = async () => { await redis.del(...KEYS.map((k) => `${prefix}${k}`)); await redis.quit() }
  } else if (way === 'ours: cache.get') {
    const client = createRedisClient({ url: REDIS_URL })
    const cache = createCacheManager(client, { prefix, localEnabled: false, redisTimeoutMs: 10_000 })
    // Under callgrind a start takes many times its usual time: past ready()'s default 2 s the bus is not yet
    // subscribed, the cache serves without Redis, and its first read misses.
    if (!await cache.ready(120_000)) throw new Error(`${way}: the cache's invalidation bus did not subscribe`)
    // One by one: under callgrind one pipeline of all of them ran past the command budget.
    for (const key of KEYS) await cache.set(key, value)
    op = () => cache.get(nextKey())
    close = async () => { await cache.deletePattern('*'); await cache.close(); await client.quit() }
  } else {
    const bento = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix}bento`, local: false })
    for (const key of KEYS) await bento.bento.set({ key, value })
    op = () => bento.bento.get({ key: nextKey() })
    close = async () => { await bento.bento.clear(); await bento.close() }
  }
  const first = await op()
  if (JSON.stringify(first) !== JSON.stringify(value)) throw new Error(`${way} read back another value: ${String(JSON.stringify(first)).slice(0, 80)}`)
  await inFlight(warmup, concurrency, op)
  const pid = String(process.pid)
  await run('callgrind_control', ['--instr=on', pid])
  await inFlight(reads, concurrency, op)
  await run('callgrind_control', ['--instr=off', pid])
  await run('callgrind_control', ['--dump', pid])
  await close()
}

const FUNCTIONS = Number(args.functions)
for (const name of ['functions', 'warmup'] as const) {
  if (!(Number.isInteger(Number(args[name])) && Number(args[name]) >= 0)) throw new Error(`--${name}: a whole number, not ${args[name]}`)
}

function measure (way: Way, dir: string): { main: number, all: number, functions?: Map<string, FunctionCost> } {
  const out = join(dir, `cg-${WAYS.indexOf(way)}`)
  // --smc-check and --no-compact-code-space keep JIT code where the perf map says it is, for --functions.
  const named = FUNCTIONS > 0 ? { valgrind: ['--smc-check=all-non-file'], node: ['--perf-basic-prof', '--no-compact-code-space'] } : { valgrind: [], node: [] }
  const r = spawnSync('valgrind', ['--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', ...named.valgrind, `--callgrind-out-file=${out}`,
    process.execPath, ...named.node, fileURLToPath(import.meta.url), '--child', way, '--reads', args.reads, '--in-flight', args['in-flight'], '--warmup', args.warmup], { encoding: 'utf8', env: { ...process.env, REDIS_URL } })
  if (r.status !== 0) throw new Error(`${way} under callgrind exited ${r.status}: ${r.stderr.slice(-2000)}`)
  // The first dump (`.1`) of the main thread (`-01`: one file per thread with --separate-threads).
  const main = `cg-${WAYS.indexOf(way)}.1-01`
  if (!readdirSync(dir).includes(main)) throw new Error(`${way}: no main-thread dump in ${dir}`)
  const perRead = Math.round(callgrindTotal(join(dir, main)) / Number(args.reads))
  let functions: Map<string, FunctionCost> | undefined
  if (FUNCTIONS > 0) {
    const pid = /==(\d+)==/.exec(r.stderr)?.[1]
    const map = `/tmp/perf-${pid}.map`
    functions = functionCosts(readFileSync(join(dir, main), 'utf8'), readPerfMap(map))
    rmSync(map, { force: true })
  }
  // A main thread that counted nothing was never switched on: a row of zeros would read as a result.
  if (perRead === 0) throw new Error(`${way}: the main thread counted no instructions`)
  // Every thread's too: V8 marks and sweeps the heap partly on helper threads, which the main thread's count leaves out.
  const all = readdirSync(dir).filter((f) => f.startsWith(`cg-${WAYS.indexOf(way)}.1-`)).reduce((n, f) => n + callgrindTotal(join(dir, f)), 0)
  for (const f of readdirSync(dir)) rmSync(join(dir, f))
  return { main: perRead, all: Math.round(all / Number(args.reads)), functions }
}

/** The functions whose self instructions per read differ most between ours and bentocache (summed over rounds). */
function functionTable (ours: Array<Map<string, FunctionCost>>, bento: Array<Map<string, FunctionCost>>): Array<Record<string, string | number>> {
  const reads = Number(args.reads)
  const a = sumCosts(ours, ours.length * reads)
  const b = sumCosts(bento, bento.length * reads)
  const names = new Set([...a.keys(), ...b.keys()])
  return [...names].map((fn) => ({ fn, ours: a.get(fn)?.self ?? 0, bento: b.get(fn)?.self ?? 0 }))
    .sort((x, y) => Math.abs(y.ours - y.bento) - Math.abs(x.ours - x.bento))
    .slice(0, FUNCTIONS)
    .map(({ fn, ours, bento }) => ({ function: fn.length > 110 ? `…${fn.slice(-109)}` : fn, 'ours/read': Math.round(ours), 'bentocache/read': Math.round(bento), 'ours - bentocache': Math.round(ours - bento) }))
}

if (args.child !== undefined) {
  await child(args.child as Way, Number(args.reads), Number(args['in-flight']), Number(args.warmup))
} else {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cache-redis-hit-'))
  const counts = new Map<Way, number[]>(WAYS.map((w) => [w, []]))
  const allThreads = new Map<Way, number[]>(WAYS.map((w) => [w, []]))
  const functions = new Map<Way, Array<Map<string, FunctionCost>>>(WAYS.map((w) => [w, []]))
  try {
    for (let round = 1; round <= Number(args.rounds); round++) {
      // Interleaved, every other round in reverse.
      for (const way of round % 2 === 1 ? WAYS : [...WAYS].reverse()) {
        const n = measure(way, dir)
        counts.get(way)?.push(n.main)
        allThreads.get(way)?.push(n.all)
        if (n.functions !== undefined) functions.get(way)?.push(n.functions)
        console.error(`[bench:cache-redis-hit] round ${round} ${way}: ${n.main} instructions per read on the main thread, ${n.all} in all threads`)
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const bento = median(counts.get('bentocache get') ?? [])
  console.log(`\nRedis hits of a 5.7 KB page, ${args.reads} reads after ${args.warmup} uncounted, ${args['in-flight']} in flight, local tiers and auto-pipelining off; main-thread instructions per read under callgrind, medians of ${args.rounds} interleaved rounds:\n`)
  console.log(table(WAYS.map((way) => ({
    way,
    'instructions/read': median(counts.get(way) ?? []),
    'each round': (counts.get(way) ?? []).join(', '),
    'bentocache / this (> 1: this is cheaper)': Math.round(bento / median(counts.get(way) ?? []) * 100) / 100,
    'all threads/read': median(allThreads.get(way) ?? []),
    'all threads, bentocache / this': Math.round(median(allThreads.get('bentocache get') ?? []) / median(allThreads.get(way) ?? []) * 100) / 100
  }))))
  if (FUNCTIONS > 0) {
    console.log(`\nThe ${FUNCTIONS} functions whose main-thread instructions per read (self, not their callees) differ most, ours against bentocache, over all rounds:\n`)
    console.log(table(functionTable(functions.get('ours: cache.get') ?? [], functions.get('bentocache get') ?? [])))
  }
}
