import type { FastifyInstance, FastifyRequest } from 'fastify'

/**
 * Whose W3C trace context a service continues, as said by a plugin that knows the platform's callers (`./api-keys`:
 * callers presenting the service key). A caller's `traceparent`, `tracestate` and `baggage` are its own text, ids it
 * chose and free text that may spell a name or phone, and would reach every span and log line of its request. Without
 * such a plugin every caller's context is continued. A registry symbol, so the telemetry preload reads it without
 * importing the plugin that sets it.
 */
export const kTrustsCallerTrace = Symbol.for('lead-chassis.trusts-caller-trace')

export type TrustsCallerTrace = (request: FastifyRequest) => boolean

/** Whether `request`'s trace context is continued on `app`. */
export function trustsCallerTrace (app: FastifyInstance, request: FastifyRequest): boolean {
  const trusts = (app as unknown as Record<symbol, TrustsCallerTrace | undefined>)[kTrustsCallerTrace]
  return trusts === undefined || trusts(request)
}
