import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { ServiceClient, type ServiceClientOptions } from './client.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Clients of the other services this one calls, by name. */
    services: Record<string, ServiceClient>
  }
}

export interface HttpClientPluginOptions {
  clients: ServiceClientOptions[]
}

/**
 * Decorates `app.services` with one pooled client per service called, closed with the app. An upstream that is
 * down is not a readiness failure of this service: its routes answer 503 on their own, so instances are not
 * taken out of rotation for a fault they cannot fix.
 */
export const httpClientPlugin = fp(async (app: FastifyInstance, opts: HttpClientPluginOptions) => {
  const services: Record<string, ServiceClient> = {}
  for (const options of opts.clients) services[options.name] = new ServiceClient(options)
  app.decorate('services', services)
  app.addHook('onClose', async () => { await Promise.all(Object.values(services).map((c) => c.close())) })
}, { name: 'http-client', fastify: '5.x' })
