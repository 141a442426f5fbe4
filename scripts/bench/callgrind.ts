import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { projectRoot } from '../../services/platform/paths.js'

/**
 * The instructions a callgrind dump file counted: callgrind_annotate's PROGRAM TOTALS, which sums the cost lines
 * (a dump taken after `--instr=off` says 0 on its own `totals:` line).
 */
export function callgrindTotal (file: string): number {
  // A thread that ran nothing while counting (a libuv worker asleep in its poll) has a dump with no cost lines, for
  // which callgrind_annotate prints no totals. Its `totals:` line says so; `summary:` does not, since a dump taken
  // after `--instr=off` says 0 there whatever it counted.
  if (/^totals: 0$/m.test(readFileSync(file, 'utf8'))) return 0
  const out = execFileSync('callgrind_annotate', [file], { encoding: 'utf8', maxBuffer: 1 << 28 })
  const line = out.split('\n').find((l) => l.includes('PROGRAM TOTALS'))
  const first = line?.trim().split(/\s+/)[0]
  // A thread that ran nothing while counting (a libuv worker) has no cost: annotate prints '.' for its total.
  if (first === '.') return 0
  const total = Number(first?.replaceAll(',', '') ?? Number.NaN)
  if (!Number.isFinite(total)) throw new Error(`no PROGRAM TOTALS for ${file}`)
  return total
}

/** Runs `callgrind_control <options> <pid>` (`--instr=on`, `--dump`, ...), failing loudly. */
export function callgrindControl (pid: number, ...options: string[]): void {
  const r = spawnSync('callgrind_control', [...options, String(pid)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`callgrind_control ${options.join(' ')} ${pid}: ${r.stderr}${r.stdout}`)
}

/**
 * The instructions of dump `index` of `pid` in `dir` (files `cg.<pid>.<index>-<thread>`, written with
 * `--callgrind-out-file=<dir>/cg.%p --separate-threads=yes`): the main thread's and all threads'.
 */
export function dumpedThreads (dir: string, pid: number, index: number): { main: number, all: number } {
  const files = readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.${index}-`))
  if (files.length === 0) throw new Error(`no dump cg.${pid}.${index}-* in ${dir}`)
  let main = 0
  let all = 0
  for (const file of files) {
    const count = callgrindTotal(join(dir, file))
    all += count
    if (file.endsWith('-01')) main = count
  }
  return { main, all }
}

/**
 * Starts `node <nodeArgs>` under `valgrind <valgrindArgs>`, its dumps in `dir` as `cg.<pid>...`, and waits until it
 * answers `/health/ready` on `port` (under valgrind a start takes minutes on a busy machine).
 */
export async function startUnderCallgrind (label: string, valgrindArgs: string[], nodeArgs: string[], env: Record<string, string>, port: number, dir: string): Promise<{ child: ChildProcess, url: string }> {
  const child = spawn('valgrind', [...valgrindArgs, `--callgrind-out-file=${join(dir, 'cg.%p')}`, process.execPath, ...nodeArgs], { cwd: projectRoot, env: { PATH: process.env.PATH ?? '', PORT: String(port), ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${label}: exited with ${child.exitCode}\n${stderr}`)
    if (await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)) break
    if (i > 1200) throw new Error(`${label}: not ready after 10 minutes`)
    await sleep(500)
  }
  return { child, url }
}
