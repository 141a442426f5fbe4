import pg from 'pg'
import { MAX_TIMER_MS } from '../chassis/index.js'
import { PoolErrors } from './errors.js'
import type { PoolLogger } from './pool.js'

export interface NotificationListenerOptions {
  /** First wait before reconnecting after the connection is lost; doubles per failed attempt. @default 100 */
  reconnectDelayMs?: number
  /** Longest wait between reconnection attempts. @default 2000 */
  maxReconnectDelayMs?: number
  /**
   * Period of a `SELECT 1` on the listening connection, which also bounds how long it may take to answer: a link
   * that died without a word (no FIN, no error) is noticed within twice this. 0 disables. @default 5000
   */
  heartbeatMs?: number
  logger?: PoolLogger
}

export const listenerDefaults = Object.freeze({ reconnectDelayMs: 100, maxReconnectDelayMs: 2000, heartbeatMs: 5000 })

/**
 * What is wrong with `options`, one line each: a first delay of 0 would never grow (reconnecting at once, forever),
 * a negative heartbeat would turn it off without a word, and Node fires a timer above MAX_TIMER_MS at once.
 */
export function listenerOptionProblems (options: NotificationListenerOptions): string[] {
  const o = withDefaults(options)
  const problems: string[] = []
  const within = (value: number, min: number): boolean => Number.isInteger(value) && value >= min && value <= MAX_TIMER_MS
  if (!within(o.reconnectDelayMs, 1)) problems.push(`listener.reconnectDelayMs must be an integer from 1 to ${MAX_TIMER_MS}`)
  if (!within(o.maxReconnectDelayMs, 1)) problems.push(`listener.maxReconnectDelayMs must be an integer from 1 to ${MAX_TIMER_MS}`)
  if (!within(o.heartbeatMs, 0)) problems.push(`listener.heartbeatMs must be an integer from 0 (off) to ${MAX_TIMER_MS}`)
  return problems
}

function withDefaults (options: NotificationListenerOptions): Required<Omit<NotificationListenerOptions, 'logger'>> {
  return { ...listenerDefaults, ...Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== undefined && k !== 'logger')) }
}

/** What a subscriber hears: each payload, and each change of the link (a reconnect means notifications may be lost). */
export interface NotificationHandlers {
  notification: (payload: string) => void
  /** The link went down: until `up`, notifications are not delivered. */
  down?: () => void
  /** LISTEN is in place again (also after the first connect): whatever happened in between was not heard. */
  up?: () => void
}

// pg's end() says goodbye and waits for the server's reply, which a dead or mute server never sends: the socket is
// destroyed instead (pg keeps it on the client's connection).
function destroy (client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy: () => void } } }).connection?.stream?.destroy()
}

async function endWithin (client: pg.Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([client.end().catch(() => {}), new Promise((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
  destroy(client)
}

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/
const noopLogger: PoolLogger = { info () {}, warn () {}, error () {} }

/**
 * PostgreSQL LISTEN on one dedicated connection, outside the pool: a pooled connection is handed to other queries
 * and reset, and its LISTEN would go with it. The connection is re-opened after any loss, with backoff, and every
 * channel listened to again; subscribers are told (`down`, `up`) so they can drop whatever a missed notification
 * would have invalidated.
 */
// Hand-written rather than pg-listen: its last release neither re-issues LISTEN after a reconnect nor says when
// listening resumed, and gives up reconnecting after 3 s; both are what this class is for.
export class NotificationListener {
  readonly #config: pg.ClientConfig
  readonly #options: Required<Omit<NotificationListenerOptions, 'logger'>>
  readonly #log: PoolLogger
  readonly #channels = new Map<string, Set<NotificationHandlers>>()
  #client: pg.Client | undefined
  #opening: pg.Client | undefined
  #up = false
  #closed = false
  #connecting: Promise<void> | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #delay: number

  constructor (config: pg.ClientConfig, options: NotificationListenerOptions = {}) {
    const problems = listenerOptionProblems(options)
    if (problems.length > 0) throw new PoolErrors.DB_POOL_INVALID_OPTIONS(problems.join('; '))
    this.#options = withDefaults(options)
    this.#config = { ...config, keepAlive: true, ...(this.#options.heartbeatMs > 0 ? { query_timeout: this.#options.heartbeatMs } : {}) }
    this.#log = options.logger ?? noopLogger
    this.#delay = this.#options.reconnectDelayMs
  }

  /** True while LISTEN is in place on a live connection. */
  get up (): boolean {
    return this.#up
  }

  /** The server process id of the listening connection (for operators and tests), undefined while down. */
  get processId (): number | undefined {
    return this.#up ? (this.#client as unknown as { processID?: number } | undefined)?.processID : undefined
  }

  /**
   * Subscribes to `channel`; resolves once LISTEN is in place (rejects when the first connection cannot be made).
   * Returns the function that unsubscribes.
   */
  async subscribe (channel: string, handlers: NotificationHandlers): Promise<() => void> {
    if (!CHANNEL.test(channel)) throw new PoolErrors.DB_LISTEN_INVALID_CHANNEL(channel)
    let set = this.#channels.get(channel)
    const fresh = set === undefined
    if (!set) this.#channels.set(channel, set = new Set())
    set.add(handlers)
    const unsubscribe = (): void => { set.delete(handlers) }
    if (this.#up && fresh) {
      // Listening on a live link: a failure here is a lost link, which the reconnect answers with LISTEN for all.
      await this.#client?.query(`LISTEN ${channel}`).catch(() => {})
    } else if (!this.#up) {
      await this.#connect()
    }
    return unsubscribe
  }

  /** Closes the connection; no reconnect after. Safe to call twice. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#up = false
    clearTimeout(this.#retryTimer)
    clearInterval(this.#heartbeat)
    // A connection attempt in flight is cut short rather than waited for: a server that does not answer must not
    // hold up a shutdown.
    if (this.#opening) destroy(this.#opening)
    await this.#connecting?.catch(() => {})
    if (this.#client) await endWithin(this.#client, 1000)
  }

  #connect (): Promise<void> {
    this.#connecting ??= this.#open().finally(() => { this.#connecting = undefined })
    return this.#connecting
  }

  async #open (): Promise<void> {
    // A subscribe during a reconnect pause connects at once; the retry timer then finds the link up.
    if (this.#closed || this.#up) return
    const client = new pg.Client(this.#config)
    client.on('error', (err) => this.#lost(client, err))
    client.on('end', () => this.#lost(client))
    client.on('notification', (message) => this.#deliver(message.channel, message.payload ?? ''))
    this.#opening = client
    try {
      await client.connect()
      for (const channel of this.#channels.keys()) await client.query(`LISTEN ${channel}`)
    } catch (error) {
      await endWithin(client, 1000)
      throw error
    } finally {
      this.#opening = undefined
    }
    if (this.#closed) {
      await endWithin(client, 1000)
      return
    }
    // Only now does the client count: a link lost before it listened is this attempt's failure, not a drop.
    this.#client = client
    this.#up = true
    this.#delay = this.#options.reconnectDelayMs
    if (this.#options.heartbeatMs > 0) {
      this.#heartbeat = setInterval(() => {
        // query_timeout ends the query (and the link is then ended below) when the server no longer answers.
        client.query('SELECT 1').catch((err: Error) => { this.#lost(client, err); destroy(client) })
      }, this.#options.heartbeatMs).unref()
    }
    this.#log.info({ pid: this.processId, channels: [...this.#channels.keys()] }, 'listening for database notifications')
    this.#each((h) => h.up?.())
  }

  #lost (client: pg.Client, err?: Error): void {
    if (client !== this.#client || this.#closed) return
    this.#client = undefined
    clearInterval(this.#heartbeat)
    const wasUp = this.#up
    this.#up = false
    if (wasUp) {
      this.#log.warn({ err: { message: err?.message ?? 'connection ended' } }, 'database notification link lost; reconnecting')
      this.#each((h) => h.down?.())
    }
    this.#scheduleReconnect()
  }

  #scheduleReconnect (): void {
    if (this.#closed || this.#retryTimer !== undefined) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#connect().catch((error: Error) => {
        this.#delay = Math.min(this.#delay * 2, this.#options.maxReconnectDelayMs)
        this.#log.warn({ err: { message: error.message } }, 'reconnecting the database notification link failed; retrying')
        this.#scheduleReconnect()
      })
    }, this.#delay).unref()
  }

  #deliver (channel: string, payload: string): void {
    for (const h of this.#channels.get(channel) ?? []) this.#safely(() => h.notification(payload))
  }

  #each (fn: (h: NotificationHandlers) => void): void {
    for (const set of this.#channels.values()) for (const h of set) this.#safely(() => fn(h))
  }

  // A subscriber that throws must not take the link (or the other subscribers) down with it.
  #safely (fn: () => void): void {
    try {
      fn()
    } catch (error) {
      this.#log.error({ err: { message: (error as Error).message } }, 'database notification handler failed')
    }
  }
}
