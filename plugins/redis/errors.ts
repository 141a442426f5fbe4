import createError from '@fastify/error'

/** Every error the Redis plugin raises, keyed by its code. */
export const RedisErrors = {
  REDIS_TIMEOUT: createError<'REDIS_TIMEOUT', [number]>('REDIS_TIMEOUT', 'Redis did not answer within %d ms'),
  REDIS_BREAKER_OPEN: createError<'REDIS_BREAKER_OPEN', []>('REDIS_BREAKER_OPEN', 'Redis circuit breaker is open'),
  REDIS_INVALID_OPTIONS: createError<'REDIS_INVALID_OPTIONS', [string]>('REDIS_INVALID_OPTIONS', 'Invalid Redis client options: %s')
} as const
