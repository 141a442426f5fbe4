import createError from '@fastify/error'

/** Every error the rate limiter raises, keyed by its code. */
export const RateLimitErrors = {
  RATE_LIMIT_INVALID_POLICY: createError<'RATE_LIMIT_INVALID_POLICY', [string]>('RATE_LIMIT_INVALID_POLICY', 'Invalid rate-limit policy: %s'),
  RATE_LIMIT_UNKNOWN_PRESET: createError<'RATE_LIMIT_UNKNOWN_PRESET', [string]>('RATE_LIMIT_UNKNOWN_PRESET', 'Unknown rate-limit preset "%s"'),
  RATE_LIMIT_INVALID_OPTIONS: createError<'RATE_LIMIT_INVALID_OPTIONS', [string]>('RATE_LIMIT_INVALID_OPTIONS', 'Invalid rate limiter options: %s'),
  RATE_LIMIT_INVALID_ROUTE_SETTING: createError<'RATE_LIMIT_INVALID_ROUTE_SETTING', [string, string, string, string]>('RATE_LIMIT_INVALID_ROUTE_SETTING',
    'Route %s %s has an invalid rateLimit setting %s: %s'),
  RATE_LIMITED: createError<'RATE_LIMITED', 429, [string, number, number, number]>('RATE_LIMITED',
    'Rate limit "%s" exceeded: %d requests per %d s; retry in %d s', 429),
  RATE_LIMIT_UNAVAILABLE: createError<'RATE_LIMIT_UNAVAILABLE', 503, [string]>('RATE_LIMIT_UNAVAILABLE', 'Rate limit "%s" cannot be checked right now', 503)
} as const
