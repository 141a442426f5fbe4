import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import { closeRedisClient, type RedisClient } from '@lead-chassis/plugins/redis'

export interface AssignmentEvent {
  type: 'lead.assigned'
  leadId: string
  agentId: string
  agentName: string
  score: number
  assignedAt: string
}

/**
 * Routing events for live clients. With Redis, every instance publishes to one channel and hears it on its own
 * subscriber connection, so a client connected to any instance sees every instance's events (its own included,
 * once); without Redis, events stay in this process. If a publish fails (Redis down), the event still reaches
 * this instance's clients: live updates degrade to per instance, routing itself does not fail.
 */
export class EventHub {
  readonly #local = new EventEmitter()
  readonly #publisher: RedisClient | undefined
  readonly #subscriber: RedisClient | undefined
  readonly #channel: string
  readonly #log: FastifyBaseLogger
  #subscribed: Promise<void> | undefined

  constructor (redis: RedisClient | undefined, channel: string, log: FastifyBaseLogger) {
    this.#local.setMaxListeners(0)
    this.#publisher = redis
    this.#channel = channel
    this.#log = log
    if (redis) {
      // Subscriptions need their own connection; it may queue while offline since it only subscribes.
      this.#subscriber = redis.duplicate({ enableOfflineQueue: true, commandTimeout: undefined, connectionName: 'orchestrator-events' } as never)
      this.#subscriber.on('message', (_channel: string, message: string) => this.#deliver(message))
      this.#subscriber.on('error', (err: Error) => log.warn({ err }, 'event subscriber link error'))
      this.#subscribed = this.#subscriber.subscribe(channel).then(() => undefined, (err: unknown) => log.warn({ err }, 'event subscribe failed'))
    }
  }

  /** Resolves once this instance hears the channel (at once without Redis), or after `timeoutMs` if Redis is down. */
  async ready (timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#subscribed, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }

  async publish (event: AssignmentEvent): Promise<void> {
    const message = JSON.stringify(event)
    if (!this.#publisher) return this.#deliver(message)
    try {
      await this.#publisher.publish(this.#channel, message)
    } catch (err) {
      this.#log.warn({ err }, 'event publish failed; delivered to this instance only')
      this.#deliver(message)
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
