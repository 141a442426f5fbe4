import { channel } from 'node:diagnostics_channel'
import type { FastifyInstance } from 'fastify'

/**
 * Published once per service, after the shared plugins and before the route modules. Request tracing subscribes
 * here, so that the spans it makes per hook cover the service's own hooks and handlers, not the chassis's
 * (request id, metrics, API key, rate limit), which would otherwise add a span each to every request.
 */
export interface RoutesMessage { app: FastifyInstance }

export const ROUTES_CHANNEL_NAME = 'chassis:service:routes'

export const routesChannel = channel(ROUTES_CHANNEL_NAME)
