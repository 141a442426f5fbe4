import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { optionalDependency } from '../chassis/index.js'
import { ConnectionPool, type ConnectionPoolOptions } from './pool.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: ConnectionPool
  }
}

export type DbPoolPluginOptions = ConnectionPoolOptions & {
  /** Use this pool instead of creating one; it is closed with the app only when `closeInjected` is true. */
  pool?: ConnectionPool
  closeInjected?: boolean
  /** `false`: no readiness check even when the health plugin is registered. Otherwise register it before this one. */
  health?: false
}

/**
 * Decorates the app with `db`, opens `min` connections at boot (boot fails when PostgreSQL is unreachable),
 * registers the readiness check, and closes the pool after in-flight requests finish.
 */
export const dbPoolPlugin = fp(async (app: FastifyInstance, opts: DbPoolPluginOptions) => {
  const { pool: injected, closeInjected = false, health: healthOption, ...options } = opts
  const health = optionalDependency(app, { plugin: 'db-pool', decorator: 'health', provider: 'the chassis health plugin (buildService does)', option: healthOption })
  const pool = injected ?? new ConnectionPool({ logger: app.log, ...options })
  if (!injected) await pool.start()
  app.decorate('db', pool)
  if (health) {
    health.register({
      name: `postgres:${pool.name}`,
      check: async () => {
        const health = await pool.checkHealth()
        if (!health.healthy) throw new Error(health.error ?? 'unhealthy')
        return pool.getMetrics()
      }
    })
  }
  app.addHook('onClose', async () => {
    if (!injected || closeInjected) await pool.close()
  })
}, { name: 'db-pool', fastify: '5.x' })
