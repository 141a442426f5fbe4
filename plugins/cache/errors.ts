import createError from '@fastify/error'

/** Every error the cache raises, keyed by its code. */
export const CacheErrors = {
  CACHE_INVALID_OPTIONS: createError<'CACHE_INVALID_OPTIONS', [string]>('CACHE_INVALID_OPTIONS', 'Invalid cache options: %s'),
  CACHE_UNSUPPORTED_VALUE: createError<'CACHE_UNSUPPORTED_VALUE', [string]>('CACHE_UNSUPPORTED_VALUE',
    'Cannot cache this value: %s. Supported: primitives, bigint, plain objects, arrays, Date, Map, Set, Buffer and typed arrays'),
  CACHE_CLOSED: createError<'CACHE_CLOSED', []>('CACHE_CLOSED', 'The cache manager is closed')
} as const
