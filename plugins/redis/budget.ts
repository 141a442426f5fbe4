import type { CircuitBreaker } from '../chassis/index.js'
import { RedisErrors } from './errors.js'

/** Runs one Redis call under a circuit breaker and a time budget; the breaker learns from the outcome. */
export async function withBudget<T> (breaker: CircuitBreaker, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  if (!breaker.allow()) throw new RedisErrors.REDIS_BREAKER_OPEN()
  let timer: NodeJS.Timeout | undefined
  try {
    const result = await Promise.race([
      call(),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new RedisErrors.REDIS_TIMEOUT(timeoutMs)), timeoutMs) })
    ])
    breaker.success()
    return result
  } catch (error) {
    breaker.failure()
    throw error
  } finally {
    clearTimeout(timer)
  }
}
