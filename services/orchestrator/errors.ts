import createError from '@fastify/error'

/** Every error code the orchestrator's routes raise about its upstream; the HTTP body carries the same `code`. */
export const OrchestratorErrors = {
  /** The data-service refused what the caller sent (its 400): the caller's input, so the caller's 4xx. */
  UPSTREAM_REFUSED_INPUT: createError<'UPSTREAM_REFUSED_INPUT', 400, [string]>('UPSTREAM_REFUSED_INPUT', 'The data-service refused the request: %s', 400),
  /** The data-service answered what it should not have: not the caller's doing. */
  UPSTREAM_ERROR: createError<'UPSTREAM_ERROR', 502, [number, string]>('UPSTREAM_ERROR', 'data-service answered %d: %s', 502)
} as const
