import { mkdtempSync, chmodSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from './ports.js'
import { runAsPostgres } from './private-postgres.js'

export interface ServerControl {
  port: number
  url: string
  start: () => void
  /** `fast` disconnects clients and shuts down; `immediate` is a crash-like stop. */
  stop: (mode?: 'fast' | 'immediate') => void
  /** Runs one statement on this server, outside any pool under test. */
  sql: <R extends object = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>
}

export interface StreamingReplica {
  primary: ServerControl
  replica: ServerControl & {
    /** Sets recovery_min_apply_delay (0 turns it off) and reloads: commits show on the replica that much later. */
    setApplyDelay: (ms: number) => Promise<void>
    /** Resolves once the replica has replayed everything the primary has written so far. */
    catchUp: (timeoutMs?: number) => Promise<void>
  }
  destroy: () => void
}

async function sqlOn<R extends object> (url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(text, params)).rows
  } finally {
    await client.end()
  }
}

function control (dir: string, data: string, port: number, log: string, settings = ''): ServerControl {
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  return {
    port,
    url,
    start: () => runAsPostgres('pg_ctl', ['-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off${settings}`, '-l', log, '-w', 'start']),
    stop: (mode = 'fast') => runAsPostgres('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']),
    sql: (text, params) => sqlOn(url, text, params)
  }
}

/**
 * A primary (wal_level=replica) and a streaming hot standby of it made with `pg_basebackup -R`, each a PostgreSQL of
 * the test's own on a free port in a temp folder owned by the `postgres` OS user.
 */
export async function startStreamingReplica (): Promise<StreamingReplica> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-replicated-'))
  chmodSync(dir, 0o777)
  const primaryData = join(dir, 'primary')
  const replicaData = join(dir, 'replica')
  const [primaryPort, replicaPort] = [await freePort(), await freePort()]
  runAsPostgres('initdb', ['-D', primaryData, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const primary = control(dir, primaryData, primaryPort, join(dir, 'primary.log'), ' -c wal_level=replica -c max_wal_senders=5')
  primary.start()
  runAsPostgres('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaData, '-R', '-X', 'stream', '-c', 'fast'])
  const replica = control(dir, replicaData, replicaPort, join(dir, 'replica.log'))
  replica.start()
  const catchUp = async (timeoutMs = 10_000): Promise<void> => {
    const [{ lsn }] = await primary.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn') as [{ lsn: string }]
    const until = Date.now() + timeoutMs
    for (;;) {
      const [row] = await replica.sql<{ reached: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS reached', [lsn])
      if (row?.reached) return
      if (Date.now() > until) throw new Error(`the replica did not replay ${lsn} within ${timeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  await catchUp()
  return {
    primary,
    replica: {
      ...replica,
      setApplyDelay: async (ms) => {
        await replica.sql(`ALTER SYSTEM SET recovery_min_apply_delay = '${Math.trunc(ms)}ms'`)
        await replica.sql('SELECT pg_reload_conf()')
        const until = Date.now() + 5000
        while (Date.now() < until) {
          const [row] = await replica.sql<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'")
          if (row?.setting === String(Math.trunc(ms))) return
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        throw new Error('recovery_min_apply_delay did not take effect')
      },
      catchUp
    },
    destroy: () => {
      for (const server of [replica, primary]) {
        try {
          server.stop('immediate')
        } catch {
          // Already stopped by the test.
        }
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
