import type { CacheLogger } from './options.js'
import type { CacheCounters } from './stats.js'

/** At most one warning this often: a Redis that refuses and takes by turns would otherwise write two lines a cycle. */
export const STUCK_LINE_INTERVAL_MS = 60_000

/**
 * What an operator learns of invalidations Redis does not take: every refused write counted, and log lines by
 * period (from the first refusal to the moment nothing is pending), not by retry, so a Redis that refuses for an hour
 * writes one warning and, once it takes them, one line saying so (or, if the cache closes first, one saying they
 * were dropped). A period that starts within a minute of the last
 * warning is logged only if it lasts past that minute; the next warning counts the ones that were not.
 * Lines carry the error's name, code and message, and counts: never a key (keys may hold ids).
 */
export class StuckInvalidations {
  readonly #stats: CacheCounters
  readonly #logger: CacheLogger | undefined
  #since: number | undefined
  #most = 0
  #refused = 0
  #logged = false
  #lastLineAt = -Infinity
  #unlogged = 0
  readonly #now: () => number

  constructor (stats: CacheCounters, logger: CacheLogger | undefined, clock: () => number = () => performance.now()) {
    this.#stats = stats
    this.#logger = logger
    this.#now = clock
  }

  /** Redis did not take a write of an invalidation (the first attempt or a retry); `pending` wait now. */
  refused (cause: unknown, pending: number): void {
    this.#stats.invalidationsRefused++
    const now = this.#now()
    if (this.#since === undefined) {
      this.#since = now
      this.#most = 0
      this.#refused = 0
      this.#logged = false
    }
    this.#refused++
    this.#most = Math.max(this.#most, pending)
    if (this.#logged || now - this.#lastLineAt < STUCK_LINE_INTERVAL_MS) return
    this.#logged = true
    this.#lastLineAt = now
    this.#logger?.warn({
      err: describe(cause),
      pending,
      stuckForMs: now - this.#since,
      ...(this.#unlogged > 0 ? { unloggedPeriods: this.#unlogged } : {})
    }, 'cache invalidation not taken by Redis: retried until it is; other instances may serve the old values meanwhile')
    this.#unlogged = 0
  }

  /** Nothing is pending any more: Redis took every invalidation of the period. */
  drained (): void {
    if (this.#since === undefined) return
    if (this.#logged) {
      this.#logger?.info({ pendingAtMost: this.#most, refusedWrites: this.#refused, stuckForMs: this.#now() - this.#since },
        'cache invalidations taken by Redis after being refused')
    } else this.#unlogged++
    this.#since = undefined
  }

  /**
   * The cache closed with `count` invalidations Redis has not taken: nothing retries them any more, and the other
   * instances may serve the old values until their TTLs. Always logged, with a code, whatever the last warning.
   */
  dropped (count: number): void {
    if (count === 0) return
    this.#logger?.warn({
      code: 'CACHE_INVALIDATIONS_DROPPED',
      dropped: count,
      ...(this.#since === undefined ? {} : { refusedWrites: this.#refused, stuckForMs: this.#now() - this.#since })
    }, 'cache closed with invalidations Redis has not taken: dropped; other instances may serve the old values until their TTL')
    this.#since = undefined
  }
}

/**
 * Name, code (Redis's error prefix: OOM, READONLY, BUSY; or the chassis's: REDIS_TIMEOUT, REDIS_BREAKER_OPEN) and
 * message; never the error itself, to which ioredis attaches the command with its arguments (keys, tombstones).
 */
function describe (cause: unknown): { name: string, code?: string, message: string } {
  if (!(cause instanceof Error)) return { name: typeof cause, message: String(cause) }
  const own = (cause as { code?: unknown }).code
  const code = typeof own === 'string' ? own : /^[A-Z]+(?= |$)/.exec(cause.message)?.[0]
  return { name: cause.name, ...(code ? { code } : {}), message: cause.message }
}
