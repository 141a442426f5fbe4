import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { CircuitBreaker, closeRedisClient, withBudget, type RedisClient } from '@lead-chassis/plugins/redis'

export interface AssignmentEvent {
  type: 'lead.assigned'
  leadId: string
  agentId: string
  agentName: string
  score: number
  assignedAt: string
}

/**
 * What of an error a log line shows. Never the error whole: ioredis puts the failed command on a ReplyError, and
 * a publish's arguments are the event, an agent's name included (a database error's detail may hold values too).
 */
export function errorFields (err: unknown): { name?: string, code?: string, message: string } {
  const e = err as { name?: unknown, code?: unknown, message?: unknown } | null
  return {
    ...(typeof e?.name === 'string' ? { name: e.name } : {}),
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    message: typeof e?.message === 'string' ? e.message : String(err)
  }
}

/** How long a publish may wait for Redis, and the breaker that stops trying while Redis keeps failing. */
export interface EventPublishBudget {
  /** The Redis command budget (REDIS_COMMAND_TIMEOUT_MS). */
  timeoutMs: number
  breakerThreshold: number
  breakerCooldownMs: number
}

/**
 * Routing events for live clients, best effort. With Redis, every instance publishes to one channel and hears it on
 * its own subscriber connection, so a client connected to any instance sees every instance's events (its own
 * included, once); without Redis, events stay in this process. A publish runs under the Redis command budget and a
 * circuit breaker, as the cache's and the limiter's calls do: when it fails or runs out of time (Redis down or hung),
 * the event still reaches this instance's clients and the failure is logged; live updates degrade to per instance,
 * and routing waits at most the budget for it (nothing once the breaker is open), never the client's 10 s backstop.
 */
export class EventHub {
  readonly #local = new EventEmitter()
  readonly #publisher: RedisClient | undefined
  readonly #subscriber: RedisClient | undefined
  readonly #channel: string
  readonly #log: FastifyBaseLogger
  readonly #timeoutMs: number
  readonly #breaker: CircuitBreaker
  #subscribed: Promise<void> | undefined

  constructor (redis: RedisClient | undefined, channel: string, log: FastifyBaseLogger, budget: EventPublishBudget) {
    this.#local.setMaxListeners(0)
    this.#timeoutMs = budget.timeoutMs
    this.#breaker = new CircuitBreaker(budget.breakerThreshold, budget.breakerCooldownMs)
    this.#publisher = redis
    this.#channel = channel
    this.#log = log
    if (redis) {
      // Subscriptions need their own connection; it may queue while offline since it only subscribes. It subscribes
      // on every 'ready' itself: ioredis's own re-subscription is a promise nobody awaits (a connection cut while it
      // is in flight is an unhandled rejection, which ends the process), and neither it nor a SUBSCRIBE that failed
      // before the first one succeeded would ever be sent again, leaving this instance deaf to the others.
      const subscriber = redis.duplicate({ enableOfflineQueue: true, commandTimeout: undefined, connectionName: 'orchestrator-events', autoResubscribe: false } as never)
      this.#subscriber = subscriber
      let subscribed = (): void => {}
      this.#subscribed = new Promise((resolve) => { subscribed = resolve })
      subscriber.on('message', (_channel: string, message: string) => this.#deliver(message))
      subscriber.on('error', (err: Error) => log.warn({ err: errorFields(err) }, 'event subscriber link error'))
      subscriber.on('ready', () => {
        subscriber.subscribe(channel).then(() => subscribed(), (err: unknown) => log.warn({ err: errorFields(err) }, 'event subscribe failed'))
      })
    }
  }

  /** Resolves once this instance hears the channel (at once without Redis), or after `timeoutMs` if Redis is down. */
  async ready (timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#subscribed, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }

  /**
   * Sends `event` to every instance's clients; resolves `false` when it reached this instance's clients only
   * (Redis failed, was slower than the budget, or its breaker is open). Never rejects.
   */
  async publish (event: AssignmentEvent): Promise<boolean> {
    const message = JSON.stringify(event)
    const publisher = this.#publisher
    if (!publisher) {
      this.#deliver(message)
      return true
    }
    try {
      await withBudget(this.#breaker, this.#timeoutMs, async () => publisher.publish(this.#channel, message))
      return true
    } catch (err) {
      this.#log.warn({ leadId: event.leadId, err: errorFields(err) }, 'event publish failed; delivered to this instance only')
      this.#deliver(message)
      return false
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
    this.#local.removeAllListeners()
    if (this.#subscriber) await closeRedisClient(this.#subscriber)
  }

  #deliver (message: string): void {
    this.#local.emit('event', message)
  }
}
