import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { freePort } from './ports.js'

const INSTANCE = join(import.meta.dirname, 'rate-limit-instance.js')

export interface FleetInstance {
  url: string
  /** The instance's log lines so far, parsed. */
  logs: Array<Record<string, unknown>>
  stats: () => Promise<{ breaker: string, instances?: number, policies: Record<string, { allowed: number, limited: number, fallback: number }> }>
  stop: () => Promise<void>
}

async function exited (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  await done
}

/** A freshly started instance (rate-limit-instance.ts) in its own process, ready once it listens. */
export async function startInstance (env: Record<string, string>): Promise<FleetInstance> {
  const port = await freePort()
  const child = spawn(process.execPath, [INSTANCE], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  const logs: Array<Record<string, unknown>> = []
  let partial = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>)
  })
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve())
    child.once('exit', (code) => reject(new Error(`rate-limit instance exited with ${code}`)))
  })
  const url = `http://127.0.0.1:${port}`
  return {
    url,
    logs,
    stats: async () => (await fetch(`${url}/stats`)).json() as never,
    stop: () => exited(child, 'SIGTERM')
  }
}

/** CPU-bound processes beside the instances, as on a busy machine. */
export function startBusyLoops (n: number): { stop: () => Promise<void> } {
  const children = Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }))
  return { stop: async () => { await Promise.all(children.map((c) => exited(c, 'SIGKILL'))) } }
}

export interface BurstCounts {
  admitted: number
  refused: number
  /** Neither 200 nor 429 (e.g. a connection error). */
  failed: number
}

/** `total` concurrent requests as one client, spread evenly over the instances, each on its own connection. */
export async function burst (urls: string[], total: number, client: string): Promise<BurstCounts> {
  const pools = urls.map((url) => new Pool(url, { connections: Math.ceil(total / urls.length), pipelining: 1 }))
  try {
    const statuses = await Promise.all(Array.from({ length: total }, async (_, i) => {
      try {
        const { statusCode, body } = await (pools[i % pools.length] as Pool).request({ method: 'GET', path: '/hello', headers: { 'x-client': client } })
        await body.dump()
        return statusCode
      } catch {
        return 0
      }
    }))
    return {
      admitted: statuses.filter((s) => s === 200).length,
      refused: statuses.filter((s) => s === 429).length,
      failed: statuses.filter((s) => s !== 200 && s !== 429).length
    }
  } finally {
    await Promise.all(pools.map((p) => p.close()))
  }
}

export interface FleetRunOptions {
  redisUrl: string
  /** Key prefix in Redis, unique per run. */
  prefix: string
  instances?: number
  limit?: number
  requests?: number
  /** Stop Redis after the instances know each other and before the burst. */
  outage?: () => Promise<void>
}

export interface FleetRun extends BurstCounts {
  /** Decisions each instance took from its in-process fallback. */
  fallbacks: number[]
  /** Each instance's log lines. */
  logs: Array<Array<Record<string, unknown>>>
}

/**
 * Starts `instances` fresh instances over one Redis, sends one burst of `requests` concurrent requests as one client
 * (limit `limit` per minute), stops the instances and returns the counts. With `outage`, Redis is stopped once every
 * instance has seen all of them in the presence set.
 */
export async function fleetRun (options: FleetRunOptions): Promise<FleetRun> {
  const n = options.instances ?? 3
  const env = { REDIS_URL: options.redisUrl, RATE_LIMIT_PREFIX: options.prefix, LIMIT: String(options.limit ?? 100) }
  const fleet = await Promise.all(Array.from({ length: n }, () => startInstance(env)))
  try {
    if (options.outage) {
      const deadline = Date.now() + 20000
      while (!(await Promise.all(fleet.map((f) => f.stats()))).every((s) => s.instances === n)) {
        if (Date.now() > deadline) throw new Error('the instances did not see each other in the presence set within 20 s')
        await sleep(50)
      }
      await options.outage()
    }
    const counts = await burst(fleet.map((f) => f.url), options.requests ?? 1000, 'burst-client')
    const stats = await Promise.all(fleet.map((f) => f.stats()))
    return { ...counts, fallbacks: stats.map((s) => Object.values(s.policies).reduce((sum, p) => sum + p.fallback, 0)), logs: fleet.map((f) => f.logs) }
  } finally {
    await Promise.all(fleet.map((f) => f.stop()))
  }
}
