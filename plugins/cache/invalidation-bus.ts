import { randomUUID } from 'node:crypto'
import { closeRedisClient, duplicateClient, settlesWithin, type RedisClient } from '../redis/index.js'
import type { RedisTier } from './redis-tier.js'
import type { CacheCounters } from './stats.js'

/** What one write invalidated, as sent to every other instance. */
export interface Invalidation {
  keys?: string[]
  patterns?: string[]
  /** Tag -> its new generation. */
  tags?: Record<string, number>
}

const PRESENCE_BEAT_MS = 2000
// How often a subscribed link is checked with a PING, and how often a refused SUBSCRIBE is tried again.
const LINK_CHECK_MS = 2000
const SUBSCRIBE_RETRY_MS = 1000
const LINK_PING_MIN_MS = 3000

interface Message extends Invalidation {
  id: string
  src: string
}

export interface BusOptions {
  channel: string
  instanceId: string
  ackTimeoutMs: number
  onInvalidation: (invalidation: Invalidation) => void
  /** Called with false when the subscription link drops (local tiers must flush) and true when it is back. */
  onLink: (up: boolean) => void
  log: (msg: string, err?: unknown) => void
}

/**
 * Redis pub/sub between instances of one cache. A publisher waits (up to ackTimeoutMs) until every other subscriber
 * acknowledges that its local tier dropped the keys, so a write answered to a client is not followed by a stale
 * local read on another instance. An instance ignores its own messages.
 */
export class InvalidationBus {
  readonly #subscriber: RedisClient
  readonly #tier: RedisTier
  readonly #o: BusOptions
  readonly #stats: CacheCounters
  readonly #ackChannel: string
  readonly #pending = new Map<string, { acks: number, expected: number, done: () => void }>()
  #up = false
  #peers = 1
  #heartbeat: NodeJS.Timeout | undefined
  readonly #linkCheck: NodeJS.Timeout | undefined
  #checking = false
  #subscribeFailing = false
  #subscribeRetry: NodeJS.Timeout | undefined
  #closed = false

  constructor (client: RedisClient, tier: RedisTier, stats: CacheCounters, options: BusOptions) {
    this.#o = options
    this.#tier = tier
    this.#stats = stats
    this.#ackChannel = `${options.channel}:ack:${options.instanceId}`
    // Subscriptions need their own connection; this one may queue while offline, since it only subscribes. It
    // subscribes on every 'ready' itself: ioredis's own re-subscription is a promise nobody awaits, so a connection
    // cut while it is in flight fails it with nobody to catch the error, an unhandled rejection that ends the process.
    this.#subscriber = duplicateClient(client, { enableOfflineQueue: true, commandTimeout: undefined, connectionName: 'chassis-cache-bus', autoResubscribe: false })
    this.#subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.#onMessage(channel.toString(), message.toString()))
    this.#subscriber.on('ready', () => { void this.#subscribe() })
    this.#subscriber.on('close', () => this.#setUp(false))
    this.#subscriber.on('error', (err: Error) => this.#o.log('cache invalidation link error', err))
    if (tier.cluster) this.#heartbeat = setInterval(() => { void this.#announce() }, PRESENCE_BEAT_MS).unref()
    this.#linkCheck = setInterval(() => { void this.#checkLink() }, LINK_CHECK_MS).unref()
  }

  /**
   * The connection the subscriptions are on. A Cluster's own `ping()` goes to any node, not down that connection:
   * its subscriber connection (one, to a node ioredis picked) is reached through `subscriber.getInstance()`, which
   * the Cluster's types keep private.
   */
  #subscribedConnection (): { status: string, ping: () => Promise<unknown> } | undefined {
    if (!this.#tier.cluster) return this.#subscriber
    const picked = (this.#subscriber as unknown as { subscriber?: { getInstance?: () => { status: string, ping: () => Promise<unknown> } | null } }).subscriber
    return picked?.getInstance?.() ?? undefined
  }

  /**
   * A subscriber only listens, so a connection Redis dropped during a partition (its socket half-open, which TCP's
   * keepalive notices after hours) looks up while no invalidation reaches it, and writers no longer wait for this
   * instance. A PING unanswered within LINK_PING_MIN_MS, or twice the ack timeout if longer, ends the connection:
   * the link is down (the local tier flushed and kept short, `onLink`) until it reconnects and subscribes. Long
   * enough that Redis busy for a second (a fork, a slow script) does not flush every instance's local tier at once.
   */
  async #checkLink (): Promise<void> {
    const connection = this.#subscribedConnection()
    if (!this.#up || this.#checking || this.#subscriber.status !== 'ready' || connection?.status !== 'ready') return
    this.#checking = true
    try {
      const answered = await settlesWithin(connection.ping().catch(() => undefined), Math.max(LINK_PING_MIN_MS, 2 * this.#o.ackTimeoutMs))
      if (!answered && !this.#closed) {
        this.#o.log('cache invalidation link did not answer a PING: reconnecting', undefined)
        // A Cluster's 'close' comes only once all its connections are gone: the link is down from now, and the
        // whole Cluster (it only subscribes) reconnects, to subscribe again on 'ready'.
        this.#setUp(false)
        this.#subscriber.disconnect(true)
      }
    } finally {
      this.#checking = false
    }
  }

  get #membersKey (): string {
    return `${this.#o.channel}:members`
  }

  async #announce (): Promise<void> {
    try {
      this.#peers = await this.#tier.presence(this.#membersKey, this.#o.instanceId, PRESENCE_BEAT_MS * 3)
    } catch {
      // Redis unreachable: the breaker and the link handlers deal with it.
    }
  }

  get up (): boolean {
    return this.#up
  }

  async #subscribe (): Promise<void> {
    try {
      await this.#subscriber.subscribe(this.#o.channel, this.#ackChannel)
      if (this.#tier.cluster) await this.#announce()
      this.#subscribeFailing = false
      this.#setUp(true)
    } catch (error) {
      // Said once until it succeeds. A SUBSCRIBE refused on a connection that stays up (an ACL user without the
      // channel's rights) is tried again: no new 'ready' would come to try it.
      if (!this.#subscribeFailing) this.#o.log('cache invalidation subscribe failed: local copies kept at most 1 s until it succeeds', error)
      this.#subscribeFailing = true
      // One retry pending at a time, whatever the reconnects that each try once more.
      if (!this.#closed && this.#subscribeRetry === undefined && this.#subscriber.status === 'ready') {
        this.#subscribeRetry = setTimeout(() => {
          this.#subscribeRetry = undefined
          if (!this.#up && !this.#closed && this.#subscriber.status === 'ready') void this.#subscribe()
        }, SUBSCRIBE_RETRY_MS).unref()
      }
    }
  }

  /** Resolves once subscribed, or after `timeoutMs`. */
  async ready (timeoutMs: number): Promise<boolean> {
    const started = Date.now()
    while (!this.#up && Date.now() - started < timeoutMs) await new Promise((resolve) => setTimeout(resolve, 10))
    return this.#up
  }

  #setUp (up: boolean): void {
    if (this.#up === up) return
    this.#up = up
    this.#o.onLink(up)
  }

  async publish (invalidation: Invalidation): Promise<void> {
    const outgoing = this.prepare(invalidation)
    let receivers: number
    try {
      // In a cluster the presence set is re-read with every publish, so an instance that just joined is waited for.
      ;[receivers] = await Promise.all([this.#tier.publish(outgoing.channel, `${outgoing.head}}`), this.#tier.cluster ? this.#announce() : undefined])
    } catch (error) {
      outgoing.drop()
      throw error
    }
    await outgoing.sent(receivers, false)
  }

  /**
   * A message for a publish made by someone else (RedisTier.invalidate sends it with the write it announces):
   * `head` is its JSON without the closing brace, so that tag generations can still be written into it; after
   * the publish, `sent` waits for the acknowledgements of `receivers` subscribers, and `drop` forgets a message
   * that never went out. Acknowledgements that arrive before `sent` are counted.
   */
  prepare (invalidation: Invalidation): { channel: string, head: string, sent: (receivers: number, announce?: boolean) => Promise<void>, drop: () => void } {
    const id = randomUUID()
    const message: Message = { id, src: this.#o.instanceId, ...invalidation }
    const acked = new Promise<void>((resolve) => this.#pending.set(id, { acks: 0, expected: Number.POSITIVE_INFINITY, done: resolve }))
    const head = JSON.stringify(message).slice(0, -1)
    const sent = async (receivers: number, announce = true): Promise<void> => {
      try {
        if (announce && this.#tier.cluster) await this.#announce()
        this.#stats.invalidationsPublished++
        const pending = this.#pending.get(id)
        if (!pending) return
        // Every other instance acknowledges; acks may already have arrived. PUBLISH counts subscribers exactly on a
        // standalone server but only those of one node in a cluster, where the presence set counts instead.
        pending.expected = this.#tier.cluster ? this.#peers - 1 : receivers - (this.#up ? 1 : 0)
        if (pending.acks >= pending.expected) return
        // Not a plain timer: one that fires after this process was blocked would count acknowledgements already
        // waiting in the socket as missing, and answer the write before it knows the other instances dropped the keys.
        if (!await settlesWithin(acked, this.#o.ackTimeoutMs)) this.#stats.ackTimeouts++
      } finally {
        this.#pending.delete(id)
      }
    }
    return { channel: this.#o.channel, head, sent, drop: () => { this.#pending.delete(id) } }
  }

  #onMessage (channel: string, raw: string): void {
    if (channel === this.#ackChannel) {
      const pending = this.#pending.get(raw)
      if (pending && ++pending.acks >= pending.expected) pending.done()
      return
    }
    let message: Message
    try {
      message = JSON.parse(raw) as Message
    } catch {
      return
    }
    if (message.src === this.#o.instanceId) return
    this.#stats.invalidationsReceived++
    this.#o.onInvalidation(message)
    this.#tier.publish(`${this.#o.channel}:ack:${message.src}`, message.id).catch(() => {})
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#heartbeat)
    clearInterval(this.#linkCheck)
    clearTimeout(this.#subscribeRetry)
    if (this.#tier.cluster) await this.#tier.leave(this.#membersKey, this.#o.instanceId).catch(() => {})
    this.#subscriber.removeAllListeners('close')
    // This connection queues offline and has no command timeout: a hung Redis would hold QUIT, and close(), forever.
    await closeRedisClient(this.#subscriber)
  }
}
