import { setTimeout as sleep } from 'node:timers/promises'
import { formatLsn, parseLsn } from './read-context.js'
import type { PoolLogger } from './pool.js'

/** What the replica set needs of a replica's pool (a ConnectionPool without replicas of its own). */
export interface ReplicaPool {
  query: (text: string, params?: readonly unknown[]) => Promise<{ rows: unknown[] }>
  close: () => Promise<void>
}

export interface ReplicaSetOptions {
  /** Longest a read that must see a write waits for a replica to replay it before it goes to the primary. */
  waitMillis: number
  /** Period of the replica check (recovery state, replay position, lag). */
  healthCheckInterval: number
  /** How often a waited-for replica's replay position is read while reads wait on it. */
  pollMillis: number
  /** The primary's current WAL position. */
  primaryPosition: () => Promise<bigint>
  logger: PoolLogger
}

/** A replica as the pool admin route shows it; `address` is host, port and database, never credentials. */
export interface ReplicaState {
  name: string
  address: string
  healthy: boolean
  replayLsn: string | undefined
  /** Seconds behind the primary: 0 when it has replayed the primary's position, else since its last replayed commit. */
  lagSeconds: number | undefined
  checkedAt: Date | undefined
  error: string | undefined
}

export type ReadTarget = 'replica' | 'primary'
/**
 * Why a marked read went where it did. replica: `any` (no write to wait for), `caught_up` (it had replayed it),
 * `waited` (it replayed it within the wait); primary: `no_healthy_replica`, `lagging` (not replayed within the wait),
 * `replica_failed` (the replica failed the read; run again on the primary), `position_unknown` (the primary's
 * position after this request's write could not be read).
 */
export type ReadReason = 'any' | 'caught_up' | 'waited' | 'no_healthy_replica' | 'lagging' | 'replica_failed' | 'position_unknown'

interface Waiter {
  target: bigint
  deadline: number
  resolve: (reached: boolean) => void
}

const HEALTH_SQL = `SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replay,
  EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS "sinceReplay"`

/**
 * A replica's lag, in seconds, from two upper bounds: the age of its last replayed commit, which after an idle spell
 * is the whole spell even when it misses one commit of a millisecond ago, and the time since a check last found it
 * caught up, since what it misses was written after that.
 */
function lagOf (sinceReplay: number | null, caughtUpAt: number | undefined): number | undefined {
  const sinceCaughtUp = caughtUpAt === undefined ? undefined : (performance.now() - caughtUpAt) / 1000
  if (sinceReplay === null) return sinceCaughtUp
  return Math.max(0, sinceCaughtUp === undefined ? sinceReplay : Math.min(sinceReplay, sinceCaughtUp))
}

export class Replica<P extends ReplicaPool> {
  healthy = false
  replay = 0n
  lagSeconds: number | undefined
  /** When (performance.now()) a check last found it had replayed the primary's position: it misses nothing older. */
  caughtUpAt: number | undefined
  checkedAt: Date | undefined
  error: string | undefined
  readonly #waiters = new Set<Waiter>()
  #polling = false

  constructor (readonly name: string, readonly address: string, readonly pool: P, readonly pollMillis: number) {}

  /** Resolves true once the replica has replayed `target`, false past `deadline` (performance.now() time) or on failure. */
  waitFor (target: bigint, deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      // The timer keeps the bound when a poll itself hangs (a replica that stopped answering).
      const timer = setTimeout(() => waiter.resolve(false), Math.max(0, deadline - performance.now()))
      const waiter: Waiter = {
        target,
        deadline,
        resolve: (reached) => {
          clearTimeout(timer)
          this.#waiters.delete(waiter)
          resolve(reached)
        }
      }
      this.#waiters.add(waiter)
      if (!this.#polling) void this.#poll()
    })
  }

  // One poll loop per replica, however many reads wait: each round is one query.
  async #poll (): Promise<void> {
    this.#polling = true
    try {
      while (this.#waiters.size > 0 && this.healthy) {
        const { rows } = await this.pool.query('SELECT pg_last_wal_replay_lsn()::text AS replay')
        this.replay = parseLsn((rows[0] as { replay?: string } | undefined)?.replay) ?? this.replay
        const now = performance.now()
        for (const w of [...this.#waiters]) {
          if (this.replay >= w.target) w.resolve(true)
          else if (now >= w.deadline) w.resolve(false)
        }
        if (this.#waiters.size > 0) await sleep(this.pollMillis)
      }
    } catch {
      // The read falls back to the primary; marking the replica is the health check's and the reads' business.
    } finally {
      this.#polling = false
      for (const w of [...this.#waiters]) w.resolve(false)
    }
  }

  state (): ReplicaState {
    return {
      name: this.name,
      address: this.address,
      healthy: this.healthy,
      replayLsn: this.checkedAt ? formatLsn(this.replay) : undefined,
      lagSeconds: this.lagSeconds,
      checkedAt: this.checkedAt,
      error: this.error
    }
  }
}

/** A replica's host, port and database: a label that carries no user or password. */
export function replicaAddress (url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}${u.pathname.length > 1 ? u.pathname : ''}`
  } catch {
    return 'unparsable-url'
  }
}

/**
 * The replicas of one primary: health-checked in the background, chosen round-robin among the healthy ones, and
 * for a read that must see a write, only one that has replayed it (waiting at most `waitMillis`).
 */
export class ReplicaSet<P extends ReplicaPool> {
  readonly replicas: Array<Replica<P>>
  readonly #options: ReplicaSetOptions
  readonly #reads = new Map<string, number>()
  #next = 0
  #timer: NodeJS.Timeout | undefined
  #checking: Promise<void> | undefined

  constructor (replicas: Array<{ name: string, address: string, pool: P }>, options: ReplicaSetOptions) {
    this.#options = options
    this.replicas = replicas.map((r) => new Replica(r.name, r.address, r.pool, options.pollMillis))
  }

  /** Checks every replica once (a replica that is down does not fail the start) and starts the periodic check. */
  async start (): Promise<void> {
    await this.checkHealth()
    if (this.#options.healthCheckInterval > 0) {
      this.#timer = setInterval(() => { void this.checkHealth() }, this.#options.healthCheckInterval).unref()
    }
  }

  checkHealth (): Promise<void> {
    this.#checking ??= this.#checkAll().finally(() => { this.#checking = undefined })
    return this.#checking
  }

  async #checkAll (): Promise<void> {
    const primaryAsked = performance.now()
    const primary = await this.#options.primaryPosition().catch(() => undefined)
    await Promise.all(this.replicas.map(async (r) => {
      try {
        const { rows } = await r.pool.query(HEALTH_SQL)
        const row = rows[0] as { recovery: boolean, replay: string | null, sinceReplay: number | null }
        // A server out of recovery (a promoted replica, or the primary itself) cannot say what it has replayed.
        if (!row.recovery) throw new Error('the server is not in recovery: not a streaming replica')
        r.replay = parseLsn(row.replay) ?? 0n
        if (primary !== undefined && r.replay >= primary) {
          r.lagSeconds = 0
          r.caughtUpAt = primaryAsked
        } else {
          r.lagSeconds = lagOf(row.sinceReplay, r.caughtUpAt)
        }
        if (!r.healthy) this.#options.logger.info({ replica: r.name }, 'replica healthy: reads may use it')
        r.healthy = true
        r.error = undefined
      } catch (error) {
        this.markFailed(r, error)
        r.lagSeconds = undefined
      }
      r.checkedAt = new Date()
    }))
  }

  /** Takes a replica out of rotation until its next successful check. */
  markFailed (replica: Replica<P>, error: unknown): void {
    replica.error = (error as Error).message
    // Said once per episode: at the failure of a replica in rotation, or at the first check of one that was down
    // before the instance started (a restart during a replica's outage would otherwise say nothing of it).
    if (!replica.healthy && replica.checkedAt !== undefined) return
    replica.healthy = false
    this.#options.logger.warn({ replica: replica.name, err: { message: replica.error } }, 'replica unhealthy: its reads go elsewhere')
  }

  /** Where a marked read goes: a replica that has replayed `required` (0n: any healthy one), or none (the primary). */
  async pick (required: bigint): Promise<{ replica?: Replica<P>, reason: ReadReason }> {
    const healthy = this.replicas.filter((r) => r.healthy)
    if (healthy.length === 0) return { reason: 'no_healthy_replica' }
    if (required === 0n) return { replica: this.#roundRobin(healthy), reason: 'any' }
    const ready = healthy.filter((r) => r.replay >= required)
    if (ready.length > 0) return { replica: this.#roundRobin(ready), reason: 'caught_up' }
    if (this.#options.waitMillis <= 0) return { reason: 'lagging' }
    const ahead = healthy.reduce((a, b) => (b.replay > a.replay ? b : a))
    const reached = await ahead.waitFor(required, performance.now() + this.#options.waitMillis)
    return reached && ahead.healthy ? { replica: ahead, reason: 'waited' } : { reason: 'lagging' }
  }

  #roundRobin (list: Array<Replica<P>>): Replica<P> {
    this.#next = (this.#next + 1) % 1_000_000
    return list[this.#next % list.length] as Replica<P>
  }

  count (target: ReadTarget, reason: ReadReason): void {
    const key = `${target}:${reason}`
    this.#reads.set(key, (this.#reads.get(key) ?? 0) + 1)
  }

  /** Marked reads since start, by target and reason. */
  getReads (): Array<{ target: ReadTarget, reason: ReadReason, count: number }> {
    return [...this.#reads].map(([key, count]) => {
      const [target, reason] = key.split(':') as [ReadTarget, ReadReason]
      return { target, reason, count }
    })
  }

  getStates (): ReplicaState[] {
    return this.replicas.map((r) => r.state())
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    await this.#checking?.catch(() => {})
    await Promise.all(this.replicas.map((r) => r.pool.close()))
  }
}
