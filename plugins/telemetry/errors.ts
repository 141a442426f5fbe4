import createError from '@fastify/error'

/** Every error the telemetry plugins raise, keyed by its code. */
export const TelemetryErrors = {
  QUERY_STATS_INVALID_OPTIONS: createError<'QUERY_STATS_INVALID_OPTIONS', [string]>('QUERY_STATS_INVALID_OPTIONS', 'Invalid query statistics options: %s')
} as const
