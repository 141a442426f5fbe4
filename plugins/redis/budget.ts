import { MAX_TIMER_MS, type CircuitBreaker } from '../chassis/index.js'
import { RedisErrors } from './errors.js'
import { afterTickWrites } from './tick-end.js'

/** The longest a budget stretches while the process itself is late, as a multiple of the budget. */
export const BUDGET_HARD_CAP_FACTOR = 10

/**
 * The longest budget: stretched BUDGET_HARD_CAP_FACTOR times, and ioredis's backstop at twice that, it must stay a
 * timer Node keeps (a longer one fires at once: every command would fail at once).
 */
export const MAX_BUDGET_MS = Math.floor(MAX_TIMER_MS / (2 * BUDGET_HARD_CAP_FACTOR))

/** The most a call under `withBudget(…, budgetMs, …)` can wait for an answer, however late the process runs. */
export function budgetHardCapMs (budgetMs: number): number {
  return budgetMs * BUDGET_HARD_CAP_FACTOR
}

/** A call in flight: when its budget runs out, what to do then, and its neighbours in its budget's list. */
interface Watched {
  budgetMs: number
  /** Set when the tick that asked the call ends (startDeadlines). */
  due: number
  hardCapAt: number
  settled: boolean
  expired: () => void
  older: Watched | undefined
  newer: Watched | undefined
}

/**
 * The calls in flight under one budget, oldest first, with one timer for all of them, armed for the oldest. Every
 * call of a budget gets the same deadline after its start, so insertion order is deadline order; a call that
 * settles leaves the list at once, and the timer, when it fires, hands the calls past their deadline to their
 * verdicts and re-arms for the oldest left. A timer per call would cost a Timeout object, a list insert and a
 * clearTimeout on every Redis call; a link costs a few field writes.
 *
 * A list linked through the calls themselves, not a Set: a long-lived Set's table is in the old generation, V8
 * allocates the table that replaces it on a rehash (every few dozen adds and deletes) there too, and the replaced one
 * still holds the calls that were in flight. Until a full collection frees it, young-generation collections take
 * those calls, and through their callbacks the replies they resolved with, as alive and promote them: a Redis hit's
 * decoded page each, megabytes a second, and full collections twice as often. A link is overwritten in place and
 * holds nothing once its call has left.
 */
class Deadlines {
  #oldest: Watched | undefined
  #newest: Watched | undefined
  #timer: NodeJS.Timeout | undefined

  add (call: Watched): void {
    call.older = this.#newest
    call.newer = undefined
    if (this.#newest === undefined) this.#oldest = call
    else this.#newest.newer = call
    this.#newest = call
    if (this.#timer === undefined) this.#arm(call.due - performance.now())
  }

  /** Takes `call` out of the list; a call no longer in it (the sweep took it out) is left as it is. */
  delete (call: Watched): void {
    if (call.older === undefined && this.#oldest !== call) return
    if (call.older === undefined) this.#oldest = call.newer
    else call.older.newer = call.newer
    if (call.newer === undefined) this.#newest = call.older
    else call.newer.older = call.older
    call.older = undefined
    call.newer = undefined
  }

  #arm (inMs: number): void {
    // Unreferenced: a call in flight holds its connection open, which keeps the process alive until its verdict;
    // a timer left armed after the last call settled must not hold the process up to a whole budget.
    this.#timer = setTimeout(this.#sweep, Math.max(1, inMs)).unref()
  }

  readonly #sweep = (): void => {
    this.#timer = undefined
    // Timers count whole milliseconds: one due within the next one is due now, as a timer of its own would be.
    const now = performance.now() + 1
    for (let call = this.#oldest; call !== undefined; call = this.#oldest) {
      if (call.due > now) {
        this.#arm(call.due - now + 1)
        return
      }
      this.delete(call)
      call.expired()
    }
  }
}

/**
 * Whether `pending` settles within `budgetMs` of the process's own time: true if it did, false if the wait timed out.
 * The same verdict as `withBudget`'s (below) for a wait that is not a Redis call, one timer per wait: a timer that
 * fires after the loop was blocked waits for the next poll phase, where an answer already in a socket is read, and
 * a wait the process made late is extended by that lateness, up to `budgetHardCapMs`.
 */
export function settlesWithin (pending: Promise<unknown>, budgetMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const tolerance = Math.max(2, budgetMs / 4)
    const start = performance.now()
    const hardCapAt = start + budgetHardCapMs(budgetMs)
    let due = start + budgetMs
    let looked = 0
    let lastLook = true
    let settled = false
    const verdict = (): void => {
      if (settled) return
      const now = performance.now()
      if (now - looked > tolerance && (now < hardCapAt || lastLook)) {
        lastLook = now < hardCapAt
        looked = now
        setImmediate(verdict)
        return
      }
      const late = now - due
      if (late > tolerance && now < hardCapAt) {
        due = Math.min(now + late, hardCapAt)
        timer = setTimeout(expired, due - now)
        return
      }
      settled = true
      resolve(false)
    }
    const expired = (): void => {
      looked = performance.now()
      setImmediate(verdict)
    }
    let timer = setTimeout(expired, budgetMs)
    const done = (): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(true)
    }
    pending.then(done, done)
  })
}

const deadlines = new Map<number, Deadlines>()

function deadlinesOf (timeoutMs: number): Deadlines {
  let d = deadlines.get(timeoutMs)
  if (d === undefined) deadlines.set(timeoutMs, d = new Deadlines())
  return d
}

// The calls asked in the current tick, whose budgets start when it ends, once the writes it held have left. One array
// for the process, emptied in place: an array left behind once promoted to the old generation would hold its calls,
// and the replies they resolved with, alive through young collections, as a Set's replaced table did (above).
const asked: Watched[] = []

function startDeadlines (): void {
  const now = performance.now()
  try {
    for (const call of asked) {
      if (call.settled) continue
      call.due = now + call.budgetMs
      call.hardCapAt = now + budgetHardCapMs(call.budgetMs)
      deadlinesOf(call.budgetMs).add(call)
    }
  } finally {
    // Even after a throw: calls left in it would keep the next tick's first call from asking for a start.
    asked.length = 0
  }
}

/**
 * Runs one Redis call under a circuit breaker and a time budget; the breaker learns from the outcome. A failure
 * counts against the breaker only if no failure was counted since the call started: one Redis stall that times out
 * every call in flight (however many concurrent reads or batches of a turn) is one failure, not one per call.
 *
 * A timer fires in the timers phase of the event loop, before the poll phase reads the sockets, so after the loop
 * was blocked (a burst of requests, a busy machine) an expired timer cannot tell a slow Redis from a reply already
 * waiting in the socket. So the verdict waits for `setImmediate`, which runs after the next poll phase, where a
 * waiting reply is read and the call settles. A poll phase that itself ran long (more than a quarter of the budget)
 * leaves replies that arrived meanwhile unread, so the verdict waits for one more, until one was short (past the
 * hard cap, for one more only). And when the
 * process was late (the timer fired late, the poll phase ran long), the command may have been written late too: the
 * wait is extended by that lateness, again while the process stays late, up to `budgetHardCapMs`. A caller thus
 * waits the budget while the process keeps up, at most the hard cap while it runs late, plus any time the process
 * is blocked, which no timer can shorten.
 *
 * The budget starts when the tick that asked the call ends, not as it is asked, and after the writes that tick held
 * have left (plugins/redis/tick-end.ts): a tick that ran long after asking (a GC pause, a CPU-bound request) would
 * otherwise have spent a held command's budget before it was sent. What the rest of that tick takes is the
 * process's own time, as a blocked loop's is.
 */
export function withBudget<T> (breaker: CircuitBreaker, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  if (!breaker.allow()) return Promise.reject(new RedisErrors.REDIS_BREAKER_OPEN())
  // The calls in flight when a failure is counted are caught by the same stall: each of them failing counts no more.
  const epoch = breaker.epoch
  return new Promise<T>((resolve, reject) => {
    const tolerance = Math.max(2, timeoutMs / 4)
    let looked = 0
    let lastLook = true
    // The first wait is the budget's shared sweep; a wait extended for lateness, rare, has a timer of its own.
    let timer: NodeJS.Timeout | undefined
    const verdict = (): void => {
      if (watched.settled) return
      const now = performance.now()
      if (now - looked > tolerance && (now < watched.hardCapAt || lastLook)) {
        lastLook = now < watched.hardCapAt
        looked = now
        setImmediate(verdict)
        return
      }
      const late = now - watched.due
      if (late > tolerance && now < watched.hardCapAt) {
        watched.due = Math.min(now + late, watched.hardCapAt)
        timer = setTimeout(watched.expired, watched.due - now)
        return
      }
      watched.settled = true
      breaker.failure(epoch)
      reject(new RedisErrors.REDIS_TIMEOUT(timeoutMs))
    }
    const watched: Watched = {
      budgetMs: timeoutMs,
      due: Number.POSITIVE_INFINITY,
      hardCapAt: Number.POSITIVE_INFINITY,
      settled: false,
      expired: () => {
        looked = performance.now()
        setImmediate(verdict)
      },
      older: undefined,
      newer: undefined
    }
    if (asked.push(watched) === 1) afterTickWrites(startDeadlines)
    const sweep = deadlinesOf(timeoutMs)
    let pending: Promise<T>
    try {
      pending = call()
      // A caller in plain JavaScript may answer with a value, not a promise: it is the result. Attaching to it threw,
      // and the call, left to its deadline, failed the breaker a budget later.
      if (typeof (pending as { then?: unknown } | undefined)?.then !== 'function') pending = Promise.resolve(pending)
    } catch (error) {
      pending = Promise.reject(error)
    }
    pending.then((result) => {
      if (watched.settled) return
      watched.settled = true
      sweep.delete(watched)
      if (timer !== undefined) clearTimeout(timer)
      breaker.success()
      resolve(result)
    }, (error: unknown) => {
      if (watched.settled) return
      watched.settled = true
      sweep.delete(watched)
      if (timer !== undefined) clearTimeout(timer)
      breaker.failure(epoch)
      reject(error)
    })
  })
}
