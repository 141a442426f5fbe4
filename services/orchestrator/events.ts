import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { CircuitBreaker, RedisErrors, closeRedisClient, duplicateClient, settlesWithin, withBudget, type RedisClient } from '@lead-chassis/plugins/redis'

export interface AssignmentEvent {
  type: 'lead.assigned'
  /** Unique per event; `publish` sets it when absent. */
  eventId?: string
  leadId: string
  agentId: string
  agentName: string
  score: number
  assignedAt: string
}

/** How long a publish may wait for Redis, and the breaker that stops trying while Redis keeps failing. */
export interface EventPublishBudget {
  /** The Redis command budget (REDIS_COMMAND_TIMEOUT_MS). */
  timeoutMs: number
  breakerThreshold: number
  breakerCooldownMs: number
  /** @default PUBLISH_FAILURE_LOG_INTERVAL_MS */
  failureLogIntervalMs?: number
}

/**
 * The most events a hub remembers as delivered here while their PUBLISH may still reach Redis; past it the oldest
 * is forgotten (its late copy, if any, is then delivered a second time). A hung Redis holds at most the publishes
 * that timed out before the breaker opened, plus one probe per cooldown, so this is far more than a hang needs.
 */
const DELIVERED_HERE_MAX = 10_000
/**
 * How long after its PUBLISH was answered or failed an event delivered here is still remembered: Redis sends the
 * subscriber's copy with the publisher's reply, on another connection, so it arrives about then, a late process aside.
 */
const DELIVERED_HERE_GRACE_MS = 10_000
/**
 * At most one publish line (a warning, or the line that says publishing recovered) per this many milliseconds: Redis
 * down under load would otherwise log a line per routed lead, and a Redis failing and succeeding in turn a warning and
 * a recovery line per lead. The failures in between are counted (`unlogged`) in the next warning, which the interval's
 * end writes if no publish does, and the recovery line gives the outage's total.
 */
const PUBLISH_FAILURE_LOG_INTERVAL_MS = 10_000
/** How often the subscriber's link is checked with a PING, on a standalone Redis. */
const LINK_CHECK_MS = 2000
/** The least time a link-check PING is given before the subscriber's connection is taken for dead. */
const LINK_PING_MIN_MS = 3000
/** How soon a refused SUBSCRIBE is tried again on a connection that stays up. */
const SUBSCRIBE_RETRY_MS = 1000

interface PublishOutage { failed: number, unlogged: number, leadId: string, err: unknown, late: number, recovered: boolean }

/** Events by how far they went: to every instance through Redis, or to this instance's clients only. */
export interface EventPublishCounts { published: number, localOnly: number }

/**
 * Routing events for live clients, best effort. With Redis, every instance publishes to one channel and hears it on
 * its own subscriber connection, so a client connected to any instance sees every instance's events (its own
 * included, once); without Redis, events stay in this process. A publish runs under the Redis command budget and a
 * circuit breaker, as the cache's and the limiter's calls do: when it fails or runs out of time (Redis down or hung),
 * the event still reaches this instance's clients, the failure is logged (at most once per
 * `PUBLISH_FAILURE_LOG_INTERVAL_MS`) and counted (`orchestrator_events_total{reach="instance"}`); live updates degrade to per instance,
 * and routing waits at most the budget for it (nothing once the breaker is open), never the client's 10 s backstop.
 *
 * A PUBLISH that ran out of time cannot be taken back: it stays queued on the connection, and a hung Redis runs it
 * when it resumes, so the other instances get the event late, and this instance's subscriber hears it again. Each
 * event carries a unique `eventId`, and the hub remembers the text of each event it delivered after such a timeout
 * (or a link cut while the PUBLISH was in flight) and drops the channel's copy of it instead of delivering it twice. It remembers one until that copy arrives or
 * `DELIVERED_HERE_GRACE_MS` after Redis answered or the connection failed the PUBLISH (never while ioredis may still
 * send it), and at most `DELIVERED_HERE_MAX` of them. A copy heard while its PUBLISH still awaits its reply is
 * delivered then, and should the budget run out after it, the event counts as published and is not delivered again.
 */
export class EventHub {
  readonly #local = new EventEmitter()
  readonly #publisher: RedisClient | undefined
  readonly #subscriber: RedisClient | undefined
  readonly #channel: string
  readonly #log: FastifyBaseLogger
  readonly #timeoutMs: number
  readonly #failureLogIntervalMs: number
  readonly #breaker: CircuitBreaker
  #subscribed: Promise<void> | undefined
  /** Whether the subscriber hears the channel now: while it does not, this instance delivers its own events itself. */
  #up = false
  /** Whether the subscriber's connection holds a subscription, whatever a PING found of it. */
  #hasSubscription = false
  #subscribeFailing = false
  #subscribeRetry: NodeJS.Timeout | undefined
  #linkCheck: NodeJS.Timeout | undefined
  #checking = false
  #closed = false
  /**
   * The text of each event delivered here after its publish timed out, or while the subscriber did not hear the
   * channel (`deaf`), oldest first, with the timer that forgets it.
   */
  readonly #deliveredHere = new Map<string, { timer: NodeJS.Timeout | undefined, deaf: boolean }>()
  /** The text of each event whose PUBLISH awaits its reply, and whether the channel's copy of it was heard meanwhile. */
  readonly #inFlight = new Map<string, boolean>()
  readonly #counts: EventPublishCounts = { published: 0, localOnly: 0 }
  /**
   * Since the first of a run of failed publishes: how many, how many since the last line, the last one's lead and
   * error (for a line that reports them later), how many of them Redis ran late after all, and whether the last
   * publish succeeded (the run is over, its line not yet written).
   */
  #outage: PublishOutage | undefined
  /**
   * When a publish line (warning or recovery) was last written. Kept across outages: a Redis at the edge of the
   * budget, failing and succeeding in turn, would otherwise write a warning and a recovery line per event.
   */
  #loggedAt = -Infinity
  /** Writes the lines held back once the interval since the last one is over, so that none waits for a next publish. */
  #logTimer: NodeJS.Timeout | undefined

  constructor (redis: RedisClient | undefined, channel: string, log: FastifyBaseLogger, budget: EventPublishBudget) {
    this.#local.setMaxListeners(0)
    this.#timeoutMs = budget.timeoutMs
    this.#failureLogIntervalMs = budget.failureLogIntervalMs ?? PUBLISH_FAILURE_LOG_INTERVAL_MS
    this.#breaker = new CircuitBreaker(budget.breakerThreshold, budget.breakerCooldownMs)
    this.#publisher = redis
    this.#channel = channel
    this.#log = log
    if (redis) {
      // Subscriptions need their own connection; it may queue while offline since it only subscribes. It subscribes
      // on every 'ready' itself: ioredis's own re-subscription is a promise nobody awaits (a connection cut while it
      // is in flight is an unhandled rejection, which ends the process), and neither it nor a SUBSCRIBE that failed
      // before the first one succeeded would ever be sent again, leaving this instance deaf to the others.
      const subscriber = duplicateClient(redis, { enableOfflineQueue: true, commandTimeout: undefined, connectionName: 'orchestrator-events', autoResubscribe: false })
      this.#subscriber = subscriber
      this.#subscribed = new Promise((resolve) => { this.#onSubscribed = resolve })
      subscriber.on('message', (_channel: string, message: string) => this.#heard(message))
      subscriber.on('error', (err: Error) => log.warn({ err }, 'event subscriber link error'))
      subscriber.on('ready', () => { void this.#subscribe() })
      subscriber.on('close', () => {
        this.#up = false
        this.#hasSubscription = false
      })
      // On a standalone Redis only: a Cluster sends a PING to any node, not down the subscriber's connection.
      if ((redis as { isCluster?: boolean }).isCluster !== true) this.#linkCheck = setInterval(() => { void this.#checkLink() }, LINK_CHECK_MS).unref()
    }
  }

  #onSubscribed = (): void => {}

  async #subscribe (): Promise<void> {
    const subscriber = this.#subscriber
    if (subscriber === undefined) return
    try {
      await subscriber.subscribe(this.#channel)
      this.#subscribeFailing = false
      this.#up = true
      this.#hasSubscription = true
      this.#onSubscribed()
    } catch (err) {
      // Said once until it succeeds. A SUBSCRIBE refused on a connection that stays up (an ACL user without the
      // channel's rights) is tried again: no new 'ready' would come to try it.
      if (!this.#subscribeFailing) this.#log.warn({ err }, 'event subscribe failed; this instance delivers its own events to its clients itself until it succeeds')
      this.#subscribeFailing = true
      if (!this.#closed && this.#subscribeRetry === undefined && subscriber.status === 'ready') {
        this.#subscribeRetry = setTimeout(() => {
          this.#subscribeRetry = undefined
          if (!this.#up && !this.#closed && subscriber.status === 'ready') void this.#subscribe()
        }, SUBSCRIBE_RETRY_MS).unref()
      }
    }
  }

  /**
   * A subscriber only listens, so a connection a partition left half-open (which TCP's keepalive notices after
   * hours) looks subscribed while no event reaches it, this instance's own included. A PING unanswered within
   * LINK_PING_MIN_MS, or twice the publish budget if longer, makes this instance deliver its own events itself; then,
   * if the publisher's connection answers a PING, the subscriber's alone is cut off and is renewed. If neither
   * answers, Redis itself is stopped or hung: the subscription is kept, so that the PUBLISHes a hung Redis runs when
   * it resumes still reach every instance, and it is taken as up again once a PING on it is answered.
   */
  async #checkLink (): Promise<void> {
    const subscriber = this.#subscriber
    const publisher = this.#publisher
    if (subscriber === undefined || publisher === undefined || !this.#hasSubscription || this.#checking || subscriber.status !== 'ready') return
    this.#checking = true
    try {
      const budget = Math.max(LINK_PING_MIN_MS, 2 * this.#timeoutMs)
      if (await settlesWithin(subscriber.ping().catch(() => undefined), budget)) {
        this.#up = this.#hasSubscription
        return
      }
      this.#up = false
      let publisherAnswered = false
      await settlesWithin(publisher.ping().then(() => { publisherAnswered = true }, () => {}), budget)
      if (publisherAnswered && !this.#closed && this.#hasSubscription) {
        this.#log.warn('event subscriber did not answer a PING: reconnecting; this instance delivers its own events itself meanwhile')
        subscriber.disconnect(true)
      }
    } finally {
      this.#checking = false
    }
  }

  /** Whether this instance hears the channel now (always true without Redis). */
  get subscribed (): boolean {
    return this.#subscriber === undefined || this.#up
  }

  /** Resolves once this instance hears the channel (at once without Redis), or after `timeoutMs` if Redis is down. */
  async ready (timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#subscribed, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }

  /**
   * Sends `event` to every instance's clients; resolves `false` when it reached only this instance's clients for
   * now (Redis failed, was slower than the budget, or its breaker is open). Never rejects.
   */
  async publish (event: AssignmentEvent): Promise<boolean> {
    const message = JSON.stringify(event.eventId === undefined ? { ...event, eventId: randomUUID() } : event)
    const publisher = this.#publisher
    if (!publisher) {
      // Without Redis this instance is the only one: its clients are every client.
      this.#counts.published++
      this.#deliver(message)
      return true
    }
    let sent: Promise<unknown> | undefined
    // Not subscribed, or its link found silent by a PING: the channel's copy may not reach this instance's clients, so
    // they get the event now, and a copy heard after all is dropped. (While a PING waits, the link is taken as up.)
    const deaf = !this.#up
    if (deaf) {
      this.#holdDeliveredHere(message, true)
      this.#deliver(message)
    }
    this.#inFlight.set(message, false)
    try {
      await withBudget(this.#breaker, this.#timeoutMs, async () => (sent = publisher.publish(this.#channel, message)))
      if (deaf) this.#forgetAfter(message, sent)
      this.#published()
      return true
    } catch (err) {
      // The channel's copy came back before the reply did (Redis sends both at once; a busy process may read the copy
      // and then find its budget spent): the event reached every instance, this one's clients included, already.
      if (this.#inFlight.get(message) === true) {
        this.#published()
        return true
      }
      this.#counts.localOnly++
      this.#noteFailure(event.leadId, err)
      // Redis may still run (or, on a link cut mid-flight, may have run) a PUBLISH that was sent and not refused by
      // a reply; one never tried (breaker open) or refused (ACL) never reaches the channel.
      const mayRun = (err as { name?: unknown } | null)?.name !== 'ReplyError' ? sent : undefined
      if (deaf) {
        this.#forgetAfter(message, mayRun)
      } else {
        if (mayRun !== undefined) this.#rememberDeliveredHere(message, mayRun)
        this.#deliver(message)
      }
      return false
    } finally {
      this.#inFlight.delete(message)
    }
  }

  #published (): void {
    this.#counts.published++
    this.#noteSuccess()
  }

  /** Events published through Redis and events that reached this instance's clients only, since start. */
  get counts (): Readonly<EventPublishCounts> {
    return this.#counts
  }

  /**
   * Logs a failed publish: at once when no publish line was written in the last interval, else counted (`unlogged`)
   * and reported by the next line, which the interval's end writes if no publish does.
   */
  #noteFailure (leadId: string, err: unknown): void {
    const outage = this.#outage ??= { failed: 0, unlogged: 0, leadId, err, late: 0, recovered: false }
    outage.failed++
    outage.recovered = false
    outage.leadId = leadId
    outage.err = err
    if (performance.now() - this.#loggedAt < this.#failureLogIntervalMs) {
      outage.unlogged++
      this.#armLogTimer()
      return
    }
    this.#warn(outage)
  }

  /** A publish succeeded after failures: the recovery line now, or at the interval's end if a line was just written. */
  #noteSuccess (): void {
    const outage = this.#outage
    if (outage === undefined) return
    outage.recovered = true
    if (performance.now() - this.#loggedAt < this.#failureLogIntervalMs) {
      this.#armLogTimer()
      return
    }
    this.#flushLog()
  }

  #armLogTimer (): void {
    if (this.#logTimer !== undefined) return
    this.#logTimer = setTimeout(() => {
      this.#logTimer = undefined
      this.#flushLog()
    }, Math.max(1, this.#loggedAt + this.#failureLogIntervalMs - performance.now()))
    this.#logTimer.unref()
  }

  /** Writes what is held back: the recovery line if publishing recovered, else a warning for the failures left out. */
  #flushLog (): void {
    clearTimeout(this.#logTimer)
    this.#logTimer = undefined
    const outage = this.#outage
    if (outage === undefined) return
    if (outage.recovered) {
      this.#loggedAt = performance.now()
      this.#outage = undefined
      // A timed-out PUBLISH that Redis ran when it resumed reached every instance, late: only the others did not.
      this.#log.info({ failed: outage.failed, late: outage.late }, 'event publish recovered; the events that failed reached this instance\'s clients only, but those Redis ran late (late)')
    } else if (outage.unlogged > 0) {
      this.#warn(outage)
    }
  }

  #warn (outage: PublishOutage): void {
    const fields = { leadId: outage.leadId, err: outage.err, ...(outage.unlogged > 0 ? { unlogged: outage.unlogged } : {}) }
    this.#loggedAt = performance.now()
    outage.unlogged = 0
    if (outage.err instanceof RedisErrors.REDIS_TIMEOUT) {
      this.#log.warn(fields, 'event publish timed out; delivered to this instance now, other instances may receive it late or not at all')
    } else {
      this.#log.warn(fields, 'event publish failed; delivered to this instance only')
    }
  }

  /** Calls `listener` with each event's JSON text; returns the function that stops it. */
  listen (listener: (message: string) => void): () => void {
    this.#local.on('event', listener)
    return () => this.#local.off('event', listener)
  }

  get listeners (): number {
    return this.#local.listenerCount('event')
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#linkCheck)
    clearTimeout(this.#subscribeRetry)
    // The failures (or the recovery) held back for the interval's end are written now: nothing publishes after this.
    this.#flushLog()
    this.#local.removeAllListeners()
    for (const { timer } of this.#deliveredHere.values()) clearTimeout(timer)
    this.#deliveredHere.clear()
    if (this.#subscriber) await closeRedisClient(this.#subscriber)
  }

  #deliver (message: string): void {
    this.#local.emit('event', message)
  }

  /** A message from the channel: delivered, unless it is the late copy of one already delivered here. */
  #heard (message: string): void {
    if (this.#inFlight.size > 0 && this.#inFlight.has(message)) this.#inFlight.set(message, true)
    const held = this.#deliveredHere.size > 0 ? this.#deliveredHere.get(message) : undefined
    if (held !== undefined) {
      clearTimeout(held.timer)
      this.#deliveredHere.delete(message)
      // A timed-out PUBLISH that Redis ran after all; one sent while deaf was never late.
      if (this.#outage !== undefined && !held.deaf) this.#outage.late++
      return
    }
    this.#deliver(message)
  }

  /**
   * Remembers `message`, delivered here while its PUBLISH (`sent`) is still queued on the connection. ioredis's own
   * command timeout fails `sent` but leaves the command queued, so only an answer or another failure starts the grace.
   */
  #rememberDeliveredHere (message: string, sent: Promise<unknown>): void {
    this.#holdDeliveredHere(message, false)
    this.#forgetAfter(message, sent)
  }

  #holdDeliveredHere (message: string, deaf: boolean): void {
    if (this.#deliveredHere.size >= DELIVERED_HERE_MAX) {
      const [oldest, held] = this.#deliveredHere.entries().next().value as [string, { timer: NodeJS.Timeout | undefined }]
      clearTimeout(held.timer)
      this.#deliveredHere.delete(oldest)
    }
    this.#deliveredHere.set(message, { timer: undefined, deaf })
  }

  #forget (message: string): void {
    clearTimeout(this.#deliveredHere.get(message)?.timer)
    this.#deliveredHere.delete(message)
  }

  /** Forgets `message` DELIVERED_HERE_GRACE_MS after its PUBLISH (`sent`) is answered or fails otherwise than by timing out. */
  #forgetAfter (message: string, sent: Promise<unknown> | undefined): void {
    if (sent === undefined) {
      this.#forget(message)
      return
    }
    const forgetLater = (): void => {
      const held = this.#deliveredHere.get(message)
      if (held === undefined) return
      held.timer = setTimeout(() => this.#deliveredHere.delete(message), DELIVERED_HERE_GRACE_MS)
      held.timer.unref()
    }
    sent.then(forgetLater, (err: unknown) => {
      if ((err as { message?: unknown } | null)?.message !== 'Command timed out') forgetLater()
    })
  }
}
