import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import { queryChannel, type QueryContext } from './channel.js'
import { DatabaseError, PoolErrors, UNSENT, isConnectionError, toDatabaseError } from './errors.js'
import { MAX_TIMER_MS } from '../chassis/index.js'
import { NotificationListener, listenerOptionProblems, type NotificationListenerOptions } from './listener.js'
import { formatLsn, newReadContext, parseLsn, readContext, type ReadContext } from './read-context.js'
import { ReplicaSet, replicaAddress, type ReadReason, type ReadTarget, type ReplicaState } from './replicas.js'

export interface PoolLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

export interface ConnectionPoolOptions {
  /** Name used in logs, metrics and the query seam. @default 'main' */
  name?: string
  /** A postgres:// URL; host, port, database, user and password override its parts. */
  connectionString?: string
  host?: string
  port?: number
  database?: string
  user?: string
  password?: string
  /** Schema put first on the search_path of every connection. @default undefined (server default) */
  schema?: string
  /** Connections opened at start and kept open, refilled after errors. @default 5 */
  min?: number
  /** Connections never exceeded. @default 20 */
  max?: number
  /** An idle connection above `min` is closed after this long; 0 never closes one. @default 30000 */
  idleTimeoutMillis?: number
  /**
   * Waiting for a connection (from the pool, or a new one's TCP connect and startup) longer than this fails with
   * DB_UNAVAILABLE; the client-side query bound caps it when shorter. @default 10000
   */
  connectionTimeoutMillis?: number
  /**
   * Server-side statement_timeout: a longer query is cancelled by PostgreSQL. It also sets the client-side bound
   * (this plus CLIENT_TIMEOUT_MARGIN_MS) on waiting for a connection plus running a statement, which holds when the
   * server never sees the query (a partition); a connection past it is destroyed, not reused. 0 disables both.
   * @default 30000
   */
  queryTimeoutMillis?: number
  /** Period of the background health check (SELECT 1, refill to `min`). 0 disables. @default 60000 */
  healthCheckInterval?: number
  /** Re-runs of a transaction after a serialization failure or deadlock. @default 5 */
  transactionRetries?: number
  /** application_name reported to PostgreSQL. @default the pool name */
  applicationName?: string
  /** How the dedicated LISTEN connection (`notifications`) reconnects and checks its link. */
  listener?: NotificationListenerOptions
  /** Streaming replicas that reads marked `read: true` may go to. @default none */
  replicas?: ReplicaOptions
  logger?: PoolLogger
}

export interface ReplicaOptions {
  /** postgres:// URLs of streaming replicas of this pool's server; named `replica-1`, `replica-2`... in order. */
  urls: readonly string[]
  /** Connections never exceeded, per replica (none are opened before the first read). @default 10 */
  max?: number
  /**
   * Longest a read that must see a write (of its request, or the position the caller presented) waits for a replica
   * to replay it; past it the read goes to the primary. 0: such reads go to the primary unless a replica has it. @default 1000
   */
  waitMillis?: number
  /** Period of the replica check (recovery state, replay position, lag); a failed check skips the replica. @default 1000 */
  healthCheckInterval?: number
  /** Period of the replay-position poll while reads wait. @default 10 */
  pollMillis?: number
}

export const replicaDefaults = Object.freeze({ max: 10, waitMillis: 1000, healthCheckInterval: 1000, pollMillis: 10 })

export type ResolvedPoolOptions = Required<Omit<ConnectionPoolOptions, 'connectionString' | 'host' | 'port' | 'database' | 'user' | 'password' | 'schema' | 'logger' | 'applicationName' | 'listener' | 'replicas'>>

export const poolDefaults: ResolvedPoolOptions = Object.freeze({
  name: 'main',
  min: 5,
  max: 20,
  idleTimeoutMillis: 30000,
  connectionTimeoutMillis: 10000,
  queryTimeoutMillis: 30000,
  healthCheckInterval: 60000,
  transactionRetries: 5
})

export interface PoolMetrics {
  totalConnections: number
  activeConnections: number
  idleConnections: number
  waitingRequests: number
  errors: number
  queries: number
  min: number
  max: number
  /** Present when the pool has replicas. */
  replicas?: ReplicaMetrics
}

export interface ReplicaMetrics {
  states: ReplicaState[]
  /** Marked reads since start, by where they went and why. */
  reads: Array<{ target: ReadTarget, reason: ReadReason, count: number }>
}

export interface PoolHealth {
  healthy: boolean
  checkedAt: Date | undefined
  latencyMs: number | undefined
  error: string | undefined
  /**
   * Every connection was busy and PostgreSQL had answered one of them within SATURATED_EVIDENCE_MS: healthy on that
   * answer, without a SELECT 1 queued behind the requests.
   */
  saturated?: boolean
}

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable'

export interface TransactionOptions {
  /** @default 'read committed' */
  isolationLevel?: IsolationLevel
  /** @default false */
  readOnly?: boolean
  /** Re-runs after 40001/40P01; overrides the pool's transactionRetries. */
  retries?: number
  /** A read-only transaction that may run on a replica, like a `read: true` query. @default false */
  read?: boolean
}

export interface QueryOptions {
  /**
   * `true`: the statement only reads; with replicas, it may run on one that has replayed this request's writes (and
   * the position the caller presented). `'primary'`: it only reads but must see the latest commit (a revocation), so
   * it runs on the primary without counting as a write. Unmarked statements run on the primary and count as writes.
   * @default false
   */
  read?: boolean | 'primary'
}

export interface QueryResult<R> {
  rows: R[]
  rowCount: number | null
}

/** What a transaction callback queries through: the one connection the transaction holds. */
export interface TransactionClient {
  query: <R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]) => Promise<QueryResult<R>>
}

/**
 * Added to queryTimeoutMillis for the client-side bound, so that a reachable server's own statement_timeout (a clean
 * 57014 that keeps the connection) answers first and the client-side bound only fires when the server cannot.
 */
export const CLIENT_TIMEOUT_MARGIN_MS = 500
/**
 * How recent an answer from PostgreSQL must be for a pool with no idle connection to count as healthy without a
 * SELECT 1: a second, the probe's default period being several.
 */
const SATURATED_EVIDENCE_MS = 1000
/** A statement is sent only with at least this much of its bound left: a round trip to a loaded server. */
const MIN_SEND_WINDOW_MS = 5
/** TCP keepalive probes start after this much silence, so a peer that vanished is noticed on idle connections too. */
export const KEEPALIVE_INITIAL_DELAY_MS = 10000
/** How often the pool counts its connections against `min` (a count, no query). */
const MIN_CHECK_INTERVAL_MS = 1000

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const noopLogger: PoolLogger = { info () {}, warn () {}, error () {} }

function validate (options: ConnectionPoolOptions): ResolvedPoolOptions {
  const o = { ...poolDefaults, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as ResolvedPoolOptions
  const problems: string[] = []
  const nonNegative = ['min', 'idleTimeoutMillis', 'queryTimeoutMillis', 'healthCheckInterval', 'transactionRetries'] as const
  for (const key of nonNegative) if (!Number.isInteger(o[key]) || o[key] < 0) problems.push(`${key} must be a non-negative integer`)
  // pg-pool reads 0 as "never": a wait for a connection would never be bounded.
  if (!Number.isInteger(o.connectionTimeoutMillis) || o.connectionTimeoutMillis < 1) problems.push('connectionTimeoutMillis must be a positive integer')
  // Node fires a timer set above MAX_TIMER_MS at once: every query would time out, every check run in a loop.
  const timers = { idleTimeoutMillis: o.idleTimeoutMillis, connectionTimeoutMillis: o.connectionTimeoutMillis, queryTimeoutMillis: o.queryTimeoutMillis + CLIENT_TIMEOUT_MARGIN_MS, healthCheckInterval: o.healthCheckInterval }
  for (const [key, ms] of Object.entries(timers)) if (ms > MAX_TIMER_MS) problems.push(`${key} must be at most ${key === 'queryTimeoutMillis' ? MAX_TIMER_MS - CLIENT_TIMEOUT_MARGIN_MS : MAX_TIMER_MS}`)
  if (options.listener) problems.push(...listenerOptionProblems(options.listener))
  if (!Number.isInteger(o.max) || o.max < 1) problems.push('max must be a positive integer')
  if (o.min > o.max) problems.push(`min (${o.min}) must not exceed max (${o.max})`)
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) problems.push('schema must be a plain identifier')
  const r = options.replicas
  if (r) {
    for (const key of ['waitMillis', 'healthCheckInterval'] as const) if (r[key] !== undefined && (!Number.isInteger(r[key]) || r[key] < 0 || r[key] > MAX_TIMER_MS)) problems.push(`replicas.${key} must be an integer from 0 to ${MAX_TIMER_MS}`)
    for (const key of ['max', 'pollMillis'] as const) if (r[key] !== undefined && (!Number.isInteger(r[key]) || r[key] < 1 || (key === 'pollMillis' && r[key] > MAX_TIMER_MS))) problems.push(`replicas.${key} must be a positive integer${key === 'pollMillis' ? ` up to ${MAX_TIMER_MS}` : ''}`)
    for (const url of r.urls) if (!/^postgres(ql)?:\/\//.test(url)) problems.push('replicas.urls must be postgres:// URLs')
  }
  if (problems.length > 0) throw new PoolErrors.DB_POOL_INVALID_OPTIONS(problems.join('; '))
  return o
}

/**
 * A pg.Pool with `min` honoured for real, server-side query timeouts, typed errors, transactions that re-run on
 * serialization failures, a background health check, and one seam every query passes through.
 */
export class ConnectionPool {
  readonly options: ResolvedPoolOptions
  readonly #pool: pg.Pool
  readonly #log: PoolLogger
  readonly #connection: pg.ClientConfig
  readonly #listenerOptions: NotificationListenerOptions
  #listener: NotificationListener | undefined
  /** Client-side bound on acquiring a connection plus running a statement; undefined when queryTimeoutMillis is 0. */
  readonly #boundMillis: number | undefined
  #errors = 0
  #queries = 0
  #closed = false
  #filling: Promise<void> | undefined
  #refillTimer: NodeJS.Timeout | undefined
  #refillDelay = 100
  #healthTimer: NodeJS.Timeout | undefined
  #minTimer: NodeJS.Timeout | undefined
  #health: PoolHealth = { healthy: false, checkedAt: undefined, latencyMs: undefined, error: undefined }
  /** When PostgreSQL last answered a statement (a result or its own error): what a saturated pool is judged on. */
  #answeredAt = Number.NEGATIVE_INFINITY
  #healthCheck: Promise<PoolHealth> | undefined
  readonly #replicas: ReplicaSet<ConnectionPool> | undefined

  constructor (options: ConnectionPoolOptions = {}) {
    this.options = validate(options)
    this.#log = options.logger ?? noopLogger
    const o = this.options
    this.#boundMillis = o.queryTimeoutMillis > 0 ? o.queryTimeoutMillis + CLIENT_TIMEOUT_MARGIN_MS : undefined
    const connection: pg.ClientConfig = {
      ...(options.connectionString ? { connectionString: options.connectionString } : {}),
      ...(options.host ? { host: options.host } : {}),
      ...(options.port ? { port: options.port } : {}),
      ...(options.database ? { database: options.database } : {}),
      ...(options.user ? { user: options.user } : {}),
      ...(options.password !== undefined ? { password: options.password } : {})
    }
    this.#connection = { ...connection, application_name: `${options.applicationName ?? o.name}-listener`, connectionTimeoutMillis: o.connectionTimeoutMillis, keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS }
    this.#listenerOptions = { logger: this.#log, ...options.listener }
    this.#pool = new pg.Pool({
      ...connection,
      min: o.min,
      max: o.max,
      idleTimeoutMillis: o.idleTimeoutMillis,
      connectionTimeoutMillis: Math.min(o.connectionTimeoutMillis, this.#boundMillis ?? Infinity),
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
      application_name: options.applicationName ?? o.name,
      ...(o.queryTimeoutMillis > 0 ? { statement_timeout: o.queryTimeoutMillis } : {}),
      ...(options.schema ? { options: `-c search_path=${options.schema}` } : {})
    })
    // A connection that dies while idle or checked out emits 'error'; unhandled, it would crash the process.
    this.#pool.on('error', (err) => this.#onConnectionError(err))
    this.#pool.on('connect', (client) => client.on('error', (err) => this.#onConnectionError(err)))
    this.#pool.on('remove', () => this.#scheduleRefill())
    const r = options.replicas
    if (r && r.urls.length > 0) {
      const ro = { ...replicaDefaults, ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) }
      const replicas = r.urls.map((url, i) => {
        const name = `replica-${i + 1}`
        // No minimum and no checks of its own: a replica that is down must not fail the start; the set checks it.
        const pool = new ConnectionPool({ ...options, replicas: undefined, connectionString: url, host: undefined, port: undefined, database: undefined, user: undefined, password: undefined, name, applicationName: `${options.applicationName ?? o.name}-${name}`, min: 0, max: ro.max, healthCheckInterval: 0 })
        return { name, address: replicaAddress(url), pool }
      })
      this.#replicas = new ReplicaSet(replicas, { ...ro, logger: this.#log, primaryPosition: () => this.#primaryPosition() })
    }
  }

  /** True when reads marked `read: true` may go to replicas (and requests carry a read-after position). */
  get hasReplicas (): boolean {
    return this.#replicas !== undefined
  }

  get name (): string {
    return this.options.name
  }

  /**
   * LISTEN/NOTIFY on a dedicated connection of this pool's server, opened on the first `subscribe` and closed with
   * the pool. NOTIFY itself is an ordinary query (`SELECT pg_notify(...)`).
   */
  get notifications (): NotificationListener {
    if (this.#closed) throw new PoolErrors.DB_POOL_CLOSED(this.name)
    this.#listener ??= new NotificationListener(this.#connection, this.#listenerOptions)
    return this.#listener
  }

  /** Opens `min` connections (failing fast when the server is unreachable) and starts the health check. */
  async start (): Promise<void> {
    await this.#fill()
    await this.checkHealth()
    if (this.options.healthCheckInterval > 0) {
      this.#healthTimer = setInterval(() => { void this.checkHealth() }, this.options.healthCheckInterval).unref()
    }
    // pg removes an idle connection above min by a timer set when it became idle, so connections idle at once can
    // all go, taking the pool under min; and it announces a removal ('remove') only once the socket has closed,
    // which over a dead link may be never. A count each second (no query) notices it whatever removed them.
    if (this.options.min > 0) this.#minTimer = setInterval(() => { this.#scheduleRefill() }, MIN_CHECK_INTERVAL_MS).unref()
    await this.#replicas?.start()
  }

  /**
   * Runs one statement on a pooled connection. Waiting for the connection and running the statement together take at
   * most queryTimeoutMillis + CLIENT_TIMEOUT_MARGIN_MS; past that it fails with DB_UNAVAILABLE and the connection is
   * destroyed.
   */
  async query<R extends object = Record<string, unknown>> (text: string, params: readonly unknown[] = [], options?: QueryOptions): Promise<QueryResult<R>> {
    if (this.#replicas === undefined) return this.#query<R>(text, params)
    if (options?.read === true) return this.#routeRead((replica) => replica.query<R>(text, params), () => this.#query<R>(text, params))
    if (options?.read !== 'primary') this.#noteWrite()
    return this.#query<R>(text, params)
  }

  async #query<R extends object> (text: string, params: readonly unknown[]): Promise<QueryResult<R>> {
    const deadline = this.#deadline()
    const client = await this.#connect()
    let broken: Error | undefined
    try {
      return await this.#run<R>(client, text, params, deadline)
    } catch (error) {
      if (isConnectionError(error)) broken = error as Error
      throw error
    } finally {
      this.#release(client, broken)
    }
  }

  /**
   * Runs `fn` inside BEGIN/COMMIT on one connection; rolls back when it throws. A serialization failure or deadlock
   * re-runs the whole callback with jittered backoff. A COMMIT whose outcome is unknown is never re-run.
   * Waiting for the connection plus BEGIN, and then each statement, have the client-side bound of `query`.
   */
  async transaction<T> (fn: (tx: TransactionClient) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    if (this.#replicas !== undefined) {
      if (opts.read === true) {
        const readOnly = { ...opts, read: false, readOnly: true }
        return this.#routeRead((replica) => replica.transaction(fn, readOnly), () => this.transaction(fn, readOnly))
      }
      // Noted before it runs: a transaction whose COMMIT outcome is unknown may have written.
      if (opts.readOnly !== true) this.#noteWrite()
    }
    const retries = opts.retries ?? this.options.transactionRetries
    const begin = `BEGIN ISOLATION LEVEL ${(opts.isolationLevel ?? 'read committed').toUpperCase()}${opts.readOnly ? ' READ ONLY' : ''}`
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#transactionOnce(fn, begin)
      } catch (error) {
        const e = toDatabaseError(error)
        const rerun = (e.code === 'DB_SERIALIZATION_FAILURE' || e.code === 'DB_DEADLOCK') && attempt < retries
        // Database errors arrive already typed by #run; anything else is the callback's own and passes through.
        if (!rerun) throw error
        await sleep(Math.random() * Math.min(1000, 20 * 2 ** attempt))
      }
    }
  }

  async #transactionOnce<T> (fn: (tx: TransactionClient) => Promise<T>, begin: string): Promise<T> {
    const deadline = this.#deadline()
    const client = await this.#connect()
    let broken: Error | undefined
    try {
      await this.#run(client, begin, [], deadline)
      let result: T
      try {
        result = await fn({ query: (text, params = []) => this.#run(client, text, params, this.#deadline()) })
      } catch (error) {
        if (isConnectionError(error)) broken = error as Error
        else await this.#run(client, 'ROLLBACK', [], this.#deadline(), false).catch((e: Error) => { broken = e })
        throw error
      }
      try {
        await this.#run(client, 'COMMIT', [], this.#deadline(), false)
      } catch (error) {
        if (isConnectionError(error)) {
          broken = error as Error
          throw new DatabaseError('DB_COMMIT_OUTCOME_UNKNOWN', 'The connection failed during COMMIT; the outcome is unknown', { retryable: false, statusCode: 503, cause: error })
        }
        throw error
      }
      return result
    } catch (error) {
      if (broken === undefined && isConnectionError(error)) broken = error as Error
      throw error
    } finally {
      this.#release(client, broken)
    }
  }

  /**
   * Runs `fn` so that its marked reads see every write committed on the primary before their first one (the
   * position is read from the primary once): for reads whose result outlives the request, such as a shared cache
   * fill, which must not store what a lagging replica still shows. Without replicas it only runs `fn`.
   */
  async freshReads<T> (fn: () => Promise<T>): Promise<T> {
    if (this.#replicas === undefined) return fn()
    // Not the caller's position: the primary's, read for this scope, covers every commit before it, the caller's
    // included, and a position a caller made up (past any the primary has) would hold every request sharing the read.
    const scope = newReadContext(0n)
    scope.wrote = true
    return readContext.run(scope, fn)
  }

  /**
   * The WAL position a later read must see for this request's writes to show (the request's own writes, read from
   * the primary, or the position it presented, whichever is later): undefined when the request wrote nothing or the
   * pool has no replicas. Sent to the caller, who presents it again (the `X-Read-After-LSN` header).
   */
  async readAfterPosition (context: ReadContext | undefined = readContext.getStore()): Promise<string | undefined> {
    if (this.#replicas === undefined || context === undefined || !context.wroteAny) return undefined
    await this.#resolveRequired(context)
    return context.required > 0n ? formatLsn(context.required) : undefined
  }

  #noteWrite (): void {
    const context = readContext.getStore()
    if (context === undefined) return
    context.wrote = true
    context.wroteAny = true
  }

  async #primaryPosition (): Promise<bigint> {
    const { rows } = await this.#query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', [])
    return parseLsn(rows[0]?.lsn) ?? 0n
  }

  /** Reads the primary's position once for the writes noted since the last read of it. */
  async #resolveRequired (context: ReadContext): Promise<void> {
    if (context.wrote) {
      context.wrote = false
      const resolving: Promise<void> = this.#primaryPosition().then((lsn) => {
        if (lsn > context.required) context.required = lsn
      }, (error: unknown) => {
        context.wrote = true
        throw error
      }).finally(() => { if (context.resolving === resolving) context.resolving = undefined })
      context.resolving = resolving
    }
    await context.resolving
  }

  /**
   * A marked read: on a replica that has what this request must see, else on the primary. A replica that fails it
   * with a connection error (or cancels it for a recovery conflict) is taken out of rotation and the read runs once
   * more, on the primary, so a replica going down fails no request.
   */
  async #routeRead<T> (onReplica: (pool: ConnectionPool) => Promise<T>, onPrimary: () => Promise<T>): Promise<T> {
    const set = this.#replicas as ReplicaSet<ConnectionPool>
    const context = readContext.getStore()
    if (context !== undefined) {
      try {
        await this.#resolveRequired(context)
      } catch {
        set.count('primary', 'position_unknown')
        return onPrimary()
      }
    }
    const { replica, reason } = await set.pick(context?.required ?? 0n)
    if (replica === undefined) {
      set.count('primary', reason)
      return onPrimary()
    }
    try {
      const result = await onReplica(replica.pool)
      set.count('replica', reason)
      return result
    } catch (error) {
      const connection = isConnectionError(error)
      // A read the replica's connection came too late to send runs on the primary, the replica kept in rotation.
      if (!connection && toDatabaseError(error).code !== 'DB_SERIALIZATION_FAILURE' && (error as Error).cause !== UNSENT) throw error
      if (connection) set.markFailed(replica, error)
      set.count('primary', 'replica_failed')
      return onPrimary()
    }
  }

  /**
   * Hands a connection back; a broken one is destroyed, and the refill is checked at once: pg announces the removal
   * ('remove') only once the socket has closed, which over a slow or dead link may be much later, or never.
   */
  #release (client: pg.PoolClient, broken: Error | undefined): void {
    client.release(broken)
    if (broken) this.#scheduleRefill()
  }

  async #connect (): Promise<pg.PoolClient> {
    if (this.#closed) throw new PoolErrors.DB_POOL_CLOSED(this.name)
    try {
      return await this.#pool.connect()
    } catch (error) {
      this.#errors++
      // A connection that failed to open left the pool without a 'remove': the pool may now be under min.
      this.#scheduleRefill()
      throw toDatabaseError(error)
    }
  }

  #deadline (): number | undefined {
    return this.#boundMillis === undefined ? undefined : performance.now() + this.#boundMillis
  }

  /**
   * Runs one statement with pg's own read timeout set to what is left until `deadline`. pg leaves a timed-out
   * connection mid-protocol, so the error counts as a connection error and the caller releases it as broken.
   */
  async #run<R extends object> (client: pg.PoolClient, text: string, params: readonly unknown[], deadline: number | undefined, mayRefuse = true): Promise<QueryResult<R>> {
    this.#queries++
    const exec = async (): Promise<QueryResult<R>> => {
      const left = deadline === undefined ? undefined : deadline - performance.now()
      // Sent with less time than a round trip, a statement would time out in the middle of its answer and take its
      // connection with it (a connection left mid-protocol is destroyed): refused unsent, the connection stays. Never
      // the end of a transaction, which would hand the connection back inside it.
      if (mayRefuse && left !== undefined && left < MIN_SEND_WINDOW_MS) {
        this.#errors++
        throw new DatabaseError('DB_UNAVAILABLE', 'The database did not answer in time: the statement was not sent', { retryable: true, statusCode: 503, cause: UNSENT })
      }
      try {
        const readTimeout = left === undefined ? undefined : Math.max(1, Math.ceil(left))
        const config = { text, values: params as unknown[], ...(readTimeout === undefined ? {} : { query_timeout: readTimeout }) }
        const result = await client.query<R>(config)
        this.#answeredAt = performance.now()
        return { rows: result.rows, rowCount: result.rowCount }
      } catch (error) {
        this.#errors++
        const typed = toDatabaseError(error)
        // An error of PostgreSQL's own (it has a SQLSTATE) is an answer; one of the client's is not.
        if (typed.code !== 'DB_UNAVAILABLE' && typed.sqlState !== undefined) this.#answeredAt = performance.now()
        throw typed
      }
    }
    if (!queryChannel.hasSubscribers) return exec()
    // A pool's clients are pg.Client instances; PoolClient's type leaves out their connection fields.
    const { database, host, port } = client as unknown as pg.Client
    const context: QueryContext = { pool: this.name, text, paramCount: params.length, database, host, port }
    return queryChannel.tracePromise(exec, context)
  }

  /**
   * Runs SELECT 1 and refills to `min`; the result feeds readiness. Callers at once share one check: each probe of
   * a PostgreSQL that does not answer would otherwise queue a statement of its own ahead of the requests.
   */
  async checkHealth (): Promise<PoolHealth> {
    // A pool whose every connection is busy and answered: a SELECT 1 would wait behind the requests past the probe's
    // timeout, and readiness would take every busy instance out of the load balancer at once.
    if (this.#pool.idleCount === 0 && this.#pool.totalCount >= this.options.max && performance.now() - this.#answeredAt < SATURATED_EVIDENCE_MS) {
      this.#health = { healthy: true, checkedAt: new Date(), latencyMs: 0, error: undefined, saturated: true }
      return { ...this.#health }
    }
    this.#healthCheck ??= this.#checkHealthOnce().finally(() => { this.#healthCheck = undefined })
    return this.#healthCheck
  }

  async #checkHealthOnce (): Promise<PoolHealth> {
    const started = performance.now()
    try {
      await this.#query('SELECT 1', [])
      this.#health = { healthy: true, checkedAt: new Date(), latencyMs: performance.now() - started, error: undefined }
      this.#scheduleRefill()
    } catch (error) {
      this.#health = { healthy: false, checkedAt: new Date(), latencyMs: performance.now() - started, error: (error as Error).message }
    }
    return this.#health
  }

  getHealth (): PoolHealth {
    return { ...this.#health }
  }

  getMetrics (): PoolMetrics {
    const total = this.#pool.totalCount
    const idle = this.#pool.idleCount
    return {
      totalConnections: total,
      activeConnections: total - idle,
      idleConnections: idle,
      waitingRequests: this.#pool.waitingCount,
      errors: this.#errors,
      queries: this.#queries,
      min: this.options.min,
      max: this.options.max,
      ...(this.#replicas ? { replicas: { states: this.#replicas.getStates(), reads: this.#replicas.getReads() } } : {})
    }
  }

  /** Checks every replica now (the periodic check runs by itself); resolves when done. */
  async checkReplicas (): Promise<ReplicaState[]> {
    await this.#replicas?.checkHealth()
    return this.#replicas?.getStates() ?? []
  }

  /** Closes every connection; queries after close fail with DB_POOL_CLOSED. Safe to call twice. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#healthTimer)
    clearInterval(this.#minTimer)
    clearTimeout(this.#refillTimer)
    await this.#filling?.catch(() => {})
    await this.#listener?.close()
    await this.#replicas?.close()
    await this.#pool.end()
  }

  #onConnectionError (err: Error): void {
    this.#errors++
    this.#health = { ...this.#health, healthy: false, error: err.message }
    this.#log.warn({ pool: this.name, err: { message: err.message, code: (err as { code?: string }).code } }, 'database connection error')
    // An idle connection that failed is already out of the pool (pg removes it before it reports the error).
    this.#scheduleRefill()
  }

  /** Opens connections until `min` are open; pg's own `min` only stops idle eviction below it. */
  async #fill (): Promise<void> {
    if (this.#filling) return this.#filling
    // Cleared in a callback, never inside the fill itself: a fill with nothing missing finishes synchronously, and a
    // `finally` inside it would run before the assignment below and leave a settled promise that every later refill reuses.
    const filling = this.#openMissing().finally(() => { if (this.#filling === filling) this.#filling = undefined })
    this.#filling = filling
    return filling
  }

  async #openMissing (): Promise<void> {
    const missing = this.options.min - this.#pool.totalCount
    if (missing <= 0) return
    // pg hands out an idle connection before it opens one: take the idle ones too, so `missing` new ones are opened.
    const clients = await Promise.allSettled(Array.from({ length: missing + this.#pool.idleCount }, () => this.#pool.connect()))
    const failed = clients.find((c): c is PromiseRejectedResult => c.status === 'rejected')
    for (const c of clients) if (c.status === 'fulfilled') c.value.release()
    if (failed) throw toDatabaseError(failed.reason)
  }

  #scheduleRefill (): void {
    if (this.#closed || this.#refillTimer !== undefined || this.#pool.totalCount >= this.options.min) return
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined
      // A fill already under way when the timer fired counted what was missing then: check again once it is done.
      this.#fill().then(() => { this.#refillDelay = 100; this.#scheduleRefill() }, (error: Error) => {
        this.#refillDelay = Math.min(this.#refillDelay * 2, 5000)
        this.#log.warn({ pool: this.name, err: { message: error.message } }, 'refilling the pool to min failed; retrying')
        this.#scheduleRefill()
      })
    }, this.#refillDelay).unref()
  }
}

/** Creates a pool; call `start()` to open `min` connections and begin health checks. */
export function createConnectionPool (options: ConnectionPoolOptions = {}): ConnectionPool {
  return new ConnectionPool(options)
}
