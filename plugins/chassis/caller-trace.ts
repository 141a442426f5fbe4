import type { FastifyRequest } from 'fastify'

/**
 * Whose W3C trace context a service continues, as said by a plugin that knows the platform's callers (`./api-keys`:
 * callers presenting the service key). A caller's `traceparent`, `tracestate` and `baggage` are its own text, ids it
 * chose and free text that may spell a name or phone, and would reach every span and log line of its request. Without
 * such a plugin every caller's context is continued. A registry symbol, so the telemetry preload reads it without
 * importing the plugin that sets it.
 */
export const kTrustsCallerTrace = Symbol.for('lead-chassis.trusts-caller-trace')

export type TrustsCallerTrace = (request: FastifyRequest) => boolean

/**
 * Whether `request`'s trace context is continued. Read from the instance of the request's route, not from the one the
 * telemetry hooks were added to: a plugin registered inside an encapsulated scope decorates that scope, and the root
 * would not see its predicate and would continue every caller's context on the routes it guards.
 */
export function trustsCallerTrace (request: FastifyRequest, ...rest: never[]): boolean {
  // A caller of the earlier (app, request) form would pass the app and read the rule of an http.Server, none: every
  // caller trusted. Refused loudly instead.
  if (rest.length > 0 || (request as { raw?: unknown }).raw === undefined) throw new TypeError('trustsCallerTrace takes the request alone')
  const trusts = (request.server as unknown as Record<symbol, TrustsCallerTrace | undefined>)[kTrustsCallerTrace]
  return trusts === undefined || trusts(request)
}
