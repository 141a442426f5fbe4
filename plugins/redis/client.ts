import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { RedisErrors } from './errors.js'
import { MAX_BUDGET_MS, budgetHardCapMs } from './budget.js'

/** A standalone or cluster client; the cache and the rate limiter work with either. */
export type RedisClient = Redis | Cluster

export interface RedisClientOptions {
  url: string
  /** Treat `url` as one seed node of a Redis Cluster. @default false */
  cluster?: boolean
  /**
   * The budget of one command this client's backstop is set from: ioredis's own command timeout, at least 10 s
   * (20 times this), since ioredis's timer, like any timer, fires before the poll phase and would fail a reply that
   * is already waiting in the socket. The budgets themselves are the callers', enforced with `withBudget` and set
   * by their own options (the cache's `redisTimeoutMs`, the rate limiter's `timeoutMs`, the api-keys lookup
   * budget's `timeoutMs`), not read from here: a service sets them all from REDIS_COMMAND_TIMEOUT_MS. @default 100
   */
  commandTimeoutMs?: number
  /** Client name shown by CLIENT LIST. */
  name?: string
  /**
   * Batch the commands of one event-loop tick into one write. It saves Redis CPU, but on a small machine it couples
   * the server's and Redis's work into lockstep batches: the rate-limit benchmark measured 15% more requests per
   * second without it, so it is off unless asked for. @default false
   */
  autoPipelining?: boolean
}

export const redisClientDefaults = Object.freeze({
  cluster: false,
  commandTimeoutMs: 100,
  autoPipelining: false
})

export type ResolvedRedisClientOptions = Readonly<Required<Omit<RedisClientOptions, 'name'>> & Pick<RedisClientOptions, 'name'>>

/** The options merged over their defaults once, every problem named in one coded error (never the URL: it may hold a password). */
export function resolveRedisClientOptions (options: RedisClientOptions): ResolvedRedisClientOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
  const o = { ...redisClientDefaults, ...defined } as ResolvedRedisClientOptions
  const problems: string[] = []
  if (typeof o.url !== 'string' || !URL.canParse(o.url) || !/^rediss?:$/.test(new URL(o.url).protocol)) problems.push('url must be a redis:// or rediss:// URL')
  if (!(Number.isFinite(o.commandTimeoutMs) && o.commandTimeoutMs > 0 && o.commandTimeoutMs <= MAX_BUDGET_MS)) problems.push(`commandTimeoutMs must be a positive number up to ${MAX_BUDGET_MS}`)
  for (const key of ['cluster', 'autoPipelining'] as const) if (typeof o[key] !== 'boolean') problems.push(`${key} must be a boolean`)
  if (o.cluster === true && problems.length === 0) problems.push(...clusterUrlProblems(new URL(o.url)))
  if (problems.length > 0) throw new RedisErrors.REDIS_INVALID_OPTIONS(problems.join('; '))
  return Object.freeze(o)
}

/**
 * What a cluster's seed URL may carry beyond its address and credentials: TLS (`rediss://`) and `?keyPrefix=`, as
 * a standalone client takes them. A database (a cluster has only 0) or another parameter would be dropped without a
 * word, so each is refused by name (never with the URL's text).
 */
function clusterUrlProblems (url: URL): string[] {
  const problems: string[] = []
  const db = url.pathname.replace(/^\//, '')
  if (db !== '' && db !== '0') problems.push('a cluster has database 0 only: the url must not name another')
  for (const name of url.searchParams.keys()) if (name !== 'keyPrefix') problems.push(`the url's ${JSON.stringify(name)} parameter is not taken by a cluster client (only keyPrefix)`)
  return problems
}

/**
 * A client tuned for a cache in front of a database: no offline queue (a command while disconnected fails at once),
 * no per-command retries, a command timeout as a backstop, and reconnection with capped backoff.
 */
export function createRedisClient (rawOptions: RedisClientOptions): RedisClient {
  const options = resolveRedisClientOptions(rawOptions)
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: backstopMs(options.commandTimeoutMs),
    enableAutoPipelining: options.autoPipelining,
    connectTimeout: 2000,
    // After disconnect(), how long a socket Redis does not close (a hung server never answers our FIN) keeps the
    // process alive before it is destroyed; ioredis waits 2 s.
    disconnectTimeout: 200,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 1000),
    ...(options.name ? { connectionName: options.name } : {})
  }
  if (!options.cluster) return new Redis(options.url, common)
  const url = new URL(options.url)
  const keyPrefix = url.searchParams.get('keyPrefix')
  const clusterOptions: ClusterOptions = {
    enableOfflineQueue: false,
    // ioredis auto-pipelines custom scripts of different slots together and the cluster rejects them.
    enableAutoPipelining: false,
    clusterRetryStrategy: (times) => Math.min(50 * 2 ** times, 1000),
    // What a standalone client reads from its URL, and a Cluster takes only as options: a `rediss://` seed would
    // otherwise reach every node in plain text, its password with it, and `?keyPrefix=` would be dropped.
    ...(keyPrefix ? { keyPrefix } : {}),
    // With TLS, the nodes' names as the cluster announces them, not resolved to addresses first: a certificate names
    // hosts, and verified against an address it would fail.
    ...(url.protocol === 'rediss:' ? { dnsLookup: (address: string, callback: (error: Error | null, address: string) => void) => { callback(null, address) } } : {}),
    redisOptions: {
      ...common,
      enableAutoPipelining: false,
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(url.username ? { username: decodeURIComponent(url.username) } : {})
    }
  }
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], clusterOptions)
}

/**
 * ioredis's own command timeout, only for commands nobody waits for with `withBudget`. Its timer fails a reply
 * that is waiting in the socket as well, after a blocked event loop, so it is set far past the budget's hard cap.
 */
function backstopMs (budgetMs: number): number {
  return Math.max(10_000, 2 * budgetHardCapMs(budgetMs))
}

export function isCluster (client: RedisClient): client is Cluster {
  return client instanceof Cluster
}

/**
 * A connection of its own for subscriptions, with `overrides` over the client's options. ioredis's `duplicate`
 * takes them as its only argument on a standalone client, but a Cluster's takes seed nodes first and per-node
 * options under `redisOptions`: handed the same object, a Cluster kept every option of the original.
 */
export function duplicateClient (client: RedisClient, overrides: Pick<RedisOptions, 'enableOfflineQueue' | 'commandTimeout' | 'connectionName' | 'autoResubscribe'>): RedisClient {
  if (!isCluster(client)) return client.duplicate(overrides)
  const offlineQueue = overrides.enableOfflineQueue === undefined ? {} : { enableOfflineQueue: overrides.enableOfflineQueue }
  return client.duplicate([], { ...offlineQueue, redisOptions: { ...client.options.redisOptions, ...overrides } })
}

/**
 * What the redis plugin decorates `app.redis` with: an ioredis client (standalone or cluster), or undefined in
 * single-instance mode. Dependents refuse a `redis` decorator of another kind.
 */
function isRedisDecorator (value: unknown): boolean {
  if (value === undefined) return true
  const client = value as { defineCommand?: unknown, duplicate?: unknown } | null
  return typeof client === 'object' && client !== null && typeof client.defineCommand === 'function' && typeof client.duplicate === 'function'
}

/** For `optionalDependency`'s `accepts`: what a dependent of `app.redis` takes. */
export const redisDecorator = { check: isRedisDecorator, what: 'an ioredis client' }

/** How long `closeRedisClient` gives Redis to answer QUIT. @default 500 */
const QUIT_WAIT_MS = 500

/**
 * Ends a connection politely when Redis answers, and at once otherwise: QUIT waits for a reply a hung Redis never
 * gives (up to the 10 s backstop, or forever on a connection with an offline queue and no command timeout), which
 * would hold a shutdown past SHUTDOWN_TIMEOUT_MS.
 */
export async function closeRedisClient (client: RedisClient, waitMs = QUIT_WAIT_MS): Promise<void> {
  // A connection Redis never made ready (hung before answering its ready check, or reconnecting) would only queue
  // QUIT behind that check or fail it: there is nothing to say goodbye to.
  if (client.status !== 'ready') {
    client.disconnect()
    return
  }
  let timer: NodeJS.Timeout | undefined
  await Promise.race([client.quit().catch(() => {}), new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs) })])
  clearTimeout(timer)
  client.disconnect()
}
