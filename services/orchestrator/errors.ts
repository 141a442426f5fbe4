import createError from '@fastify/error'

/** Every error code only the orchestrator raises; the HTTP body carries the same `code`. */
export const OrchestratorErrors = {
  LEAD_BUSY: createError<'LEAD_BUSY', 409, [string]>('LEAD_BUSY', 'Lead %s is being routed by another call', 409),
  ALREADY_ASSIGNED: createError<'ALREADY_ASSIGNED', 409, [string]>('ALREADY_ASSIGNED', 'Lead %s already has an agent', 409),
  NO_AGENT_AVAILABLE: createError<'NO_AGENT_AVAILABLE', 409, [string, string, string]>('NO_AGENT_AVAILABLE',
    'No active agent licensed for %s in %s has capacity for lead %s', 409),
  /** A plain HTTP request to the events WebSocket. */
  WEBSOCKET_UPGRADE_REQUIRED: createError<'WEBSOCKET_UPGRADE_REQUIRED', 426, []>('WEBSOCKET_UPGRADE_REQUIRED', 'This route is a WebSocket: send the request as an upgrade', 426),
  /** A WebSocket upgrade the ws library refuses; its reason names the header, never the value. */
  WEBSOCKET_HANDSHAKE_INVALID: createError<'WEBSOCKET_HANDSHAKE_INVALID', 400, [string]>('WEBSOCKET_HANDSHAKE_INVALID', 'The WebSocket handshake is not valid: %s', 400),
  /** An events WebSocket past the key's share of this instance's sockets (EVENTS_MAX_SOCKETS_PER_KEY). */
  TOO_MANY_SOCKETS: createError<'TOO_MANY_SOCKETS', 429, [number]>('TOO_MANY_SOCKETS', 'This key holds %d event WebSockets on this instance, the most it may: close one first', 429),
  /** An events WebSocket past what this instance holds (EVENTS_MAX_SOCKETS); another instance may take it. */
  EVENTS_AT_CAPACITY: createError<'EVENTS_AT_CAPACITY', 503, [number]>('EVENTS_AT_CAPACITY', 'This instance holds %d event WebSockets, the most it may', 503),
  /** The data-service refused what the caller sent (its 400): the caller's input, so the caller's 4xx. */
  UPSTREAM_REFUSED_INPUT: createError<'UPSTREAM_REFUSED_INPUT', 400, [string]>('UPSTREAM_REFUSED_INPUT', 'The data-service refused the request: %s', 400),
  /** The data-service answered what it should not have: not the caller's doing. */
  UPSTREAM_ERROR: createError<'UPSTREAM_ERROR', 502, [number, string]>('UPSTREAM_ERROR', 'data-service answered %d: %s', 502)
} as const
