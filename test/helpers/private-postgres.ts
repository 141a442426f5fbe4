import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.js'

export interface PrivatePostgres {
  port: number
  url: string
  start: () => void
  /** `fast` disconnects clients and shuts down; `immediate` is a crash-like stop. */
  stop: (mode?: 'fast' | 'immediate') => void
  destroy: () => void
}

// initdb and pg_ctl refuse to run as root: run them as the `postgres` OS user then.
export function runAsPostgres (command: string, args: string[]): void {
  const asRoot = process.getuid?.() === 0
  execFileSync(asRoot ? 'runuser' : command, asRoot ? ['-u', 'postgres', '--', command, ...args] : args, { stdio: 'pipe' })
}

/**
 * A PostgreSQL server of the test's own, on a free port in a temp folder, that the test may stop and restart.
 * `maxConnections` raises its `max_connections` (initdb's default is 100) for as many clients' pools.
 */
export async function startPrivatePostgres (options: { maxConnections?: number } = {}): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-private-'))
  chmodSync(dir, 0o777)
  const data = join(dir, 'data')
  const port = await freePort()
  runAsPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const connections = options.maxConnections === undefined ? '' : ` -c max_connections=${options.maxConnections}`
  const start = (): void => runAsPostgres('pg_ctl', ['-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off${connections}`, '-l', join(dir, 'log'), '-w', 'start'])
  const stop = (mode: 'fast' | 'immediate' = 'fast'): void => runAsPostgres('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop'])
  start()
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop,
    destroy: () => {
      try {
        stop('immediate')
      } catch {
        // Already stopped by the test.
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
