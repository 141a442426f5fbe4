import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
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
}

/**
 * Decorates the app with `db`, opens `min` connections at boot (boot fails when PostgreSQL is unreachable),
 * registers the readiness check, and closes the pool after in-flight requests finish.
 */
export const dbPoolPlugin = fp(async (app: FastifyInstance, opts: DbPoolPluginOptions) => {
  const { pool: injected, closeInjected = false, ...options } = opts
  const pool = injected ?? new ConnectionPool({ logger: app.log, ...options })
  if (!injected) await pool.start()
  app.decorate('db', pool)
  if (app.hasDecorator('health')) {
    app.health.register({
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
