import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { optionalDependency } from '../chassis/index.js'
import { closeRedisClient, createRedisClient, type RedisClient, type RedisClientOptions } from './client.js'
import { RedisErrors } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared Redis client, or undefined in single-instance mode. */
    redis: RedisClient | undefined
  }
}

export interface RedisPluginOptions extends Partial<RedisClientOptions> {
  /** Use this client instead of creating one; it is closed with the app only when `closeInjected` is true. */
  client?: RedisClient
  closeInjected?: boolean
  /** `false`: no readiness check even when the health plugin is registered. Otherwise register it before this one. */
  health?: false
}

/**
 * Decorates `app.redis`. Redis is an optional dependency: when it is down the service degrades (readiness says
 * `degraded`, not 503), so boot does not wait for it. Without a URL the app runs in single-instance mode.
 */
export const redisPlugin = fp(async (app: FastifyInstance, opts: RedisPluginOptions) => {
  const { client: injected, closeInjected = false, url, health: healthOption, ...rest } = opts
  // A client given is used as it was made: options beside it would be ignored without a word.
  const ignored = injected ? Object.entries({ url, ...rest }).filter(([, value]) => value !== undefined).map(([key]) => key) : []
  if (ignored.length > 0) throw new RedisErrors.REDIS_INVALID_OPTIONS(`${ignored.join(', ')} cannot be given with client, which keeps the options it was made with`)
  const health = optionalDependency(app, { plugin: 'redis', decorator: 'health', provider: 'the chassis health plugin (buildService does)', option: healthOption })
  const client = injected ?? (url ? createRedisClient({ url, name: 'chassis', ...rest }) : undefined)
  app.decorate<RedisClient | undefined>('redis', client)
  if (!client) {
    app.log.debug('REDIS_URL is unset: single-instance mode (in-process cache and rate limiter)')
    return
  }
  const logError = (err: Error): void => { app.log.warn({ err: { message: err.message } }, 'redis connection error') }
  client.on('error', logError)
  if (health) {
    health.register({ name: 'redis', required: false, check: async () => { await client.ping() } })
  }
  app.addHook('onClose', async () => {
    if (!injected || closeInjected) await closeRedisClient(client)
    // A client the app was given outlives it, closed or not (its owner may connect it again): its errors are no
    // longer this app's to log.
    if (injected) client.off('error', logError)
  })
}, { name: 'redis', fastify: '5.x' })
