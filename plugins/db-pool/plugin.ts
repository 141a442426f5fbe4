import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { optionalDependency } from '../chassis/index.js'
import { PoolErrors } from './errors.js'
import { ConnectionPool, type ConnectionPoolOptions } from './pool.js'
import { newReadContext, parseLsn, readContext, type ReadContext } from './read-context.js'

/**
 * The read-after position: sent on a response whose request wrote, presented by the caller on later requests so
 * that their reads on a replica see that write. A value that is not an LSN is ignored.
 */
export const READ_AFTER_HEADER = 'x-read-after-lsn'

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
  // A pool given is used as it was made: options beside it would be ignored without a word.
  const ignored = injected ? Object.keys(options).filter((key) => (options as Record<string, unknown>)[key] !== undefined) : []
  if (ignored.length > 0) throw new PoolErrors.DB_POOL_INVALID_OPTIONS(`${ignored.join(', ')} cannot be given with pool, which keeps the options it was made with`)
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
        return health.saturated === true ? { ...pool.getMetrics(), saturated: true } : pool.getMetrics()
      }
    })
  }
  if (pool.hasReplicas) readYourWrites(app, pool)
  app.addHook('onClose', async () => {
    if (!injected || closeInjected) await pool.close()
  })
}, { name: 'db-pool', fastify: '5.x' })

/** How long an answer of 5xx waits for the primary's position before it goes without one. */
const FAILED_ANSWER_POSITION_WAIT_MS = 250

/** What `promise` resolves with, or undefined if it has not within `ms`. */
async function settledWithin<T> (promise: Promise<T | undefined>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, ms) })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Each request runs in a read context (AsyncLocalStorage, so repositories need no extra parameter) that starts at the
 * position the caller presented and records the request's own writes; a request that wrote answers with the position.
 */
function readYourWrites (app: FastifyInstance, pool: ConnectionPool): void {
  const contexts = new WeakMap<FastifyRequest, ReadContext>()
  app.addHook('onRequest', (request, _reply, done) => {
    const presented = request.headers[READ_AFTER_HEADER]
    const context = newReadContext(parseLsn(presented) ?? 0n)
    contexts.set(request, context)
    readContext.run(context, done)
  })
  app.addHook('onSend', async (request, reply) => {
    const reading = pool.readAfterPosition(contexts.get(request)).catch(() => undefined)
    // A failed answer waits for the position FAILED_ANSWER_POSITION_WAIT_MS at most: when PostgreSQL cannot answer,
    // the position read would cost it a second bound; when it can, what the request committed before it failed (an
    // import's earlier batches, a COMMIT whose answer was lost) still gets its position.
    const position = reply.statusCode < 500 ? await reading : await settledWithin(reading, FAILED_ANSWER_POSITION_WAIT_MS)
    if (position !== undefined) void reply.header(READ_AFTER_HEADER, position)
  })
}
