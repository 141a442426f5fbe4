import type { CircuitBreaker } from '../chassis/index.js'
import { RedisErrors } from './errors.js'

/** The longest a budget stretches while the process itself is late, as a multiple of the budget. */
export const BUDGET_HARD_CAP_FACTOR = 10

/** The most a call under `withBudget(…, budgetMs, …)` can wait for an answer, however late the process runs. */
export function budgetHardCapMs (budgetMs: number): number {
  return budgetMs * BUDGET_HARD_CAP_FACTOR
}

/**
 * Runs one Redis call under a circuit breaker and a time budget; the breaker learns from the outcome.
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
 */
export function withBudget<T> (breaker: CircuitBreaker, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  if (!breaker.allow()) return Promise.reject(new RedisErrors.REDIS_BREAKER_OPEN())
  return new Promise<T>((resolve, reject) => {
    const started = performance.now()
    const hardCapAt = started + budgetHardCapMs(timeoutMs)
    const tolerance = Math.max(2, timeoutMs / 4)
    let due = started + timeoutMs
    let looked = 0
    let lastLook = true
    let settled = false
    let timer: NodeJS.Timeout | undefined
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
      breaker.failure()
      reject(new RedisErrors.REDIS_TIMEOUT(timeoutMs))
    }
    const expired = (): void => {
      looked = performance.now()
      setImmediate(verdict)
    }
    timer = setTimeout(expired, timeoutMs)
    let pending: Promise<T>
    try {
      pending = call()
    } catch (error) {
      pending = Promise.reject(error)
    }
    pending.then((result) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      breaker.success()
      resolve(result)
    }, (error: unknown) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      breaker.failure()
      reject(error)
    })
  })
}
