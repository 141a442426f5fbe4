import createError from '@fastify/error'
import type { CircuitBreaker } from '../chassis/index.js'

export const RedisErrors = {
  REDIS_TIMEOUT: createError<'REDIS_TIMEOUT', [number]>('REDIS_TIMEOUT', 'Redis did not answer within %d ms'),
  REDIS_BREAKER_OPEN: createError<'REDIS_BREAKER_OPEN', []>('REDIS_BREAKER_OPEN', 'Redis circuit breaker is open')
} as const

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
