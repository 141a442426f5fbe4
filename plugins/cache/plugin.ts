import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { optionalDependency } from '../chassis/index.js'
import { redisDecorator } from '../redis/index.js'
import { CacheManager } from './cache-manager.js'
import { CacheErrors } from './errors.js'
import type { CacheOptions } from './options.js'

declare module 'fastify' {
  interface FastifyInstance {
    cache: CacheManager
  }
}

export interface CachePluginOptions extends CacheOptions {
  /** Use this manager instead of creating one over `app.redis`. */
  manager?: CacheManager
  /** `false`: local-only even when the redis plugin is registered. Otherwise register it before this one. */
  redis?: false
}

/** For `optionalDependency`'s `accepts`: what a dependent of `app.cache` takes (not another library's `cache`). */
export const cacheDecorator = { check: (value: unknown): boolean => value instanceof CacheManager, what: 'a CacheManager' }

/**
 * Decorates `app.cache`: two-tier over `app.redis` when the redis plugin, registered before, has a client;
 * local-only otherwise. The redis plugin registered after this one fails `ready` (CHASSIS_PLUGIN_ORDER).
 */
export const cachePlugin = fp(async (app: FastifyInstance, opts: CachePluginOptions) => {
  const { manager, redis: redisOption, ...options } = opts
  // A manager given is used as it was made: options beside it would be ignored without a word.
  const ignored = manager ? Object.keys(options).filter((key) => (options as Record<string, unknown>)[key] !== undefined) : []
  if (ignored.length > 0) throw new CacheErrors.CACHE_INVALID_OPTIONS(`${ignored.join(', ')} cannot be given with manager, which keeps the options it was made with`)
  const redis = optionalDependency(app, { plugin: 'cache', decorator: 'redis', provider: '@lead-chassis/plugins/redis', option: manager ? false : redisOption, accepts: redisDecorator })
  const cache = manager ?? new CacheManager(redis, { logger: app.log, ...options })
  app.decorate('cache', cache)
  if (!manager && !(await cache.ready(2000))) app.log.warn('cache invalidation bus not subscribed (Redis unreachable, or its subscription refused): local copies kept at most 1 s until it is')
  // Registration, and so `ready` and /health/ready, waits for warming (bounded by warmTimeoutMs).
  else if (!manager) app.log.info({ warmed: await cache.warm() }, 'cache local tier warmed from Redis')
  app.addHook('onClose', async () => { if (!manager) await cache.close() })
}, { name: 'cache', fastify: '5.x' })
