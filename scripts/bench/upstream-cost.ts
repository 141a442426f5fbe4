import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import pg from 'pg'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { freePort } from '../../test/helpers/ports.js'
import { seededSchema } from './seeded-schema.js'
import { startService, table } from './lib.js'

// `npm run bench:upstream-cost`: the CPU one request of each class that NGINX forwards costs the api process, its
// own Redis and its PostgreSQL backends, measured per process from /proc, so a loaded machine changes the time a
// request waits but not the figures. Requests go a few at a time with the headers NGINX adds (deploy/nginx/proxy.conf).
// Redis is a private redis-server (its commands per request are counted from INFO commandstats); PostgreSQL is the
// shared server, and only the backends serving the api's connections are counted.
const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    leads: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '2' },
    // Requests in flight: a few, so the api's own timers (its CPU while idle, reported as idle-2ms) weigh little
    // against the requests' CPU; the PATCHes of a class never touch the same lead at once.
    'in-flight': { type: 'string', default: '8' },
    only: { type: 'string', default: '' },
    // A folder: the api runs with --cpu-prof and writes its profile there when it stops.
    'cpu-prof': { type: 'string', default: '' }
  }
})
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = 'bench_upstream'
const N = Number(args.requests)
const log = (m: string): void => console.log(`[bench:upstream-cost] ${m}`)
const TICK_MS = 10 // USER_HZ = 100

/** utime + stime of one process, ms. */
function cpuMs (pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS
  } catch {
    return 0
  }
}

/** The local ports of the TCP connections process `pid` holds to port `remote`, from its fds and /proc/net/tcp. */
function clientPorts (pid: number, remote: number): number[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m?.[1]) inodes.add(m[1])
    } catch {
      // The fd closed between the listing and the read.
    }
  }
  const ports: number[] = []
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try { text = readFileSync(file, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || !inodes.has(f[9] ?? '')) continue
      const local = parseInt((f[1] ?? '').split(':')[1] ?? '0', 16)
      const rem = parseInt((f[2] ?? '').split(':')[1] ?? '0', 16)
      if (rem === remote) ports.push(local)
    }
  }
  return ports
}

// --- Data and a key. ---
const pool = await seededSchema(DATABASE_URL, SCHEMA, Number(args.leads), log)
await pool.query("DELETE FROM api_keys WHERE name = 'bench'")
const key = (await new ApiKeyStore(pool).mint('bench', ['leads:read', 'leads:write'])).key
// PATCHes go round 500 leads: one lead patched thousands of times would measure PostgreSQL walking that row's dead
// versions (every status change adds index entries), which no real mix does between two vacuums.
const { rows: patched } = await pool.query<{ id: string }>('SELECT id FROM leads ORDER BY md5(id::text) LIMIT 500')
await pool.close()
const patchIds = patched.map((r) => r.id)
const leadId = patchIds[0] ?? ''

// --- A private Redis, so its CPU and commands are the api's alone. ---
const redisPort = await freePort()
const redisServer = spawn('redis-server', ['--port', String(redisPort), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'], { stdio: 'ignore' })
process.on('exit', () => { redisServer.kill() })
for (let i = 0; i < 100; i++) {
  const up = await new Promise<boolean>((resolve) => connect(redisPort, '127.0.0.1').once('connect', function (this: Socket) { this.destroy(); resolve(true) }).once('error', () => { resolve(false) }))
  if (up) break
  await sleep(50)
}
const redis = new Redis({ port: redisPort })

const api = await startService('dist/services/api/main.js', {
  DATABASE_URL, DB_SCHEMA: SCHEMA, LOG_LEVEL: 'warn', DB_POOL_MAX: '8', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
  REDIS_URL: `redis://127.0.0.1:${redisPort}`, CACHE_ENABLED: 'true', RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1/32', RATE_LIMIT_API_KEY_MAX_REQUESTS: '100000000'
}, await freePort(), args['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof']] : [])
const apiPid = api.child.pid ?? 0
const admin = new pg.Client({ connectionString: DATABASE_URL })
await admin.connect()

async function pgBackends (): Promise<number[]> {
  const ports = clientPorts(apiPid, 5432)
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])', [ports])
  return rows.map((r) => r.pid)
}

async function commandStats (): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1] ?? '', Number(m[2]))
  return out
}

// NGINX's request headers (proxy.conf), the client's key and address.
let requestId = 0
const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
  host: 'localhost', 'x-forwarded-for': '127.0.0.9', 'x-forwarded-proto': 'http', 'x-request-id': (++requestId).toString(16).padStart(32, '0'), 'x-api-key': key, ...extra
})
const LIST = '/api/v1/leads?status=new&sort=-createdAt&limit=20'
let flip = 0
const patch = async (): Promise<Response> => {
  const n = flip++
  return fetch(`${api.url}/api/v1/leads/${patchIds[n % patchIds.length] ?? ''}`, {
    method: 'PATCH', headers: headers({ 'content-type': 'application/json' }), body: JSON.stringify({ status: Math.floor(n / patchIds.length) % 2 === 0 ? 'contacted' : 'new' })
  })
}
const get = async (path: string): Promise<Response> => fetch(`${api.url}${path}`, { headers: headers() })

/** Each class: one request as NGINX would send it (`prepare` runs unmeasured before it, for the miss). */
const classes: Array<{ id: string, run: () => Promise<Response> }> = [
  // No request: what the processes use while waiting 2 ms (timers, the bus, pool checks), to tell apart from the rest.
  { id: 'idle-2ms', run: async () => { await sleep(2); return new Response() } },
  { id: 'edge-auth', run: async () => get('/api/v1/edge/auth') },
  { id: 'cached-list', run: async () => get(LIST) },
  { id: 'cached-lead', run: async () => get(`/api/v1/leads/${leadId}`) },
  { id: 'patch', run: patch },
  { id: 'list-after-patch+patch', run: async () => { await patch(); return get(LIST) } }
]

const rows: Array<Record<string, string | number>> = []
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const c of classes.filter((c) => !args.only || args.only.split(',').includes(c.id))) {
    for (let i = 0; i < 300; i++) await (await c.run()).arrayBuffer()
    await admin.query(`VACUUM ${SCHEMA}.leads, ${SCHEMA}.lead_activities`)
    await sleep(200)
    const backends = await pgBackends()
    const pg0 = backends.reduce((s, p) => s + cpuMs(p), 0)
    const api0 = cpuMs(apiPid)
    const redis0 = cpuMs(redisServer.pid ?? 0)
    const stats0 = await commandStats()
    let status = 0
    const t0 = performance.now()
    let sent = 0
    await Promise.all(Array.from({ length: c.id === 'idle-2ms' ? 1 : Number(args['in-flight']) }, async () => {
      while (sent++ < N) {
        const r = await c.run()
        await r.arrayBuffer()
        status = r.status
      }
    }))
    const wallUs = (performance.now() - t0) * 1000 / N
    const stats1 = await commandStats()
    const apiUs = (cpuMs(apiPid) - api0) * 1000 / N
    const redisUs = (cpuMs(redisServer.pid ?? 0) - redis0) * 1000 / N
    const after = await pgBackends()
    const pgUs = (backends.filter((p) => after.includes(p)).reduce((s, p) => s + cpuMs(p), 0) - pg0) * 1000 / N
    const commands = [...stats1].map(([name, n]) => [name, (n - (stats0.get(name) ?? 0) - (name === 'info' ? 1 : 0)) / N] as const)
      .filter(([, n]) => n > 0.001).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')
    rows.push({ round, class: c.id, status, 'wall µs': Math.round(wallUs), 'api µs': Math.round(apiUs), 'redis µs': Math.round(redisUs), 'pg µs': Math.round(pgUs), 'redis commands/request': commands })
    log(`round ${round} ${c.id}: wall ${Math.round(wallUs)} µs, api ${Math.round(apiUs)} µs, redis ${Math.round(redisUs)} µs, pg ${Math.round(pgUs)} µs; ${commands}`)
  }
}
console.log(`\n${N} requests per class, ${args['in-flight']} in flight, CPU per request from /proc (10 ms ticks):\n\n${table(rows)}`)
await admin.end()
await redis.quit()
await api.stop()
redisServer.kill()
await once(redisServer, 'exit')
