import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './ports.js'

export interface PrivateRedis {
  port: number
  url: string
  stop: () => Promise<void>
  start: () => Promise<void>
  pause: () => void
  resume: () => void
  destroy: () => Promise<void>
}

async function waitPing (port: number, up: boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    let ok: boolean
    try {
      ok = execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe', timeout: 1000 }).toString().trim() === 'PONG'
    } catch {
      ok = false
    }
    if (ok === up) return
    await sleep(25)
  }
  throw new Error(`redis on ${port} did not become ${up ? 'ready' : 'unreachable'}`)
}

/** A redis-server of the test's own on a free port, which the test may stop, pause (SIGSTOP) and restart. */
export async function startPrivateRedis (extraArgs: string[] = [], port?: number): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-private-'))
  const p = port ?? await freePort()
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], { stdio: 'ignore' })
    await waitPing(p, true)
  }
  const stop = async (): Promise<void> => {
    // A server already stopped (killed by a signal, so without an exit code) has nothing left to stop.
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child?.once('exit', resolve))
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }
  await start()
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    start,
    stop,
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') },
    destroy: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export interface PrivateCluster {
  ports: number[]
  url: string
  destroy: () => Promise<void>
}

/** Three masters with cluster mode on, joined with `redis-cli --cluster create`. */
export async function startPrivateCluster (): Promise<PrivateCluster> {
  const nodes: PrivateRedis[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    nodes.push(await startPrivateRedis(['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'], port))
  }
  const ports = nodes.map((n) => n.port)
  execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe', timeout: 30000 })
  for (let i = 0; i < 200; i++) {
    const info = execFileSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'], { stdio: 'pipe' }).toString()
    if (/cluster_state:ok/.test(info)) break
    await sleep(50)
  }
  return { ports, url: `redis://127.0.0.1:${ports[0]}`, destroy: async () => { await Promise.all(nodes.map((n) => n.destroy())) } }
}
