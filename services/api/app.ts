import type { FastifyInstance } from 'fastify'
import { buildService, type ServiceDefinition } from '@lead-chassis/plugins/chassis'
import { platformPlugins, preparePlatform, type PlatformOptions } from '../platform/platform.js'
import type { ApiConfig } from './config.js'
import { leadRoutes } from './routes/leads.js'
import { adminRoutes } from './routes/admin.js'
import { edgeRoutes } from './routes/edge.js'
import { pageRoutes } from './routes/page.js'

export interface BuildApiOptions extends PlatformOptions {
  logger?: ServiceDefinition['logger']
}

/** The api service, not listening: use `inject` in tests, `runService` in the entry. */
export async function buildApp (config: ApiConfig, options: BuildApiOptions = {}): Promise<FastifyInstance> {
  await preparePlatform(config)
  return buildService(apiDefinition(config, options))
}

/** What the api is built from; `buildApp` loads what the platform needs first (`preparePlatform`), bench:next-tick does not. */
export function apiDefinition (config: ApiConfig, options: BuildApiOptions = {}): ServiceDefinition {
  return {
    name: 'api',
    config,
    openapi: { prefix: '/api/v1', title: 'Leads API', description: 'Partners post insurance leads and read them back; the lead-capture page posts here anonymously.' },
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    plugins: platformPlugins('api', config, options),
    routes: [
      (app) => app.register(leadRoutes, { prefix: '/api/v1/leads', bodyLimit: config.LEAD_BODY_LIMIT_BYTES, cache: config.CACHE_ENABLED }),
      (app) => app.register(adminRoutes, { prefix: '/api/v1/admin' }),
      (app) => app.register(edgeRoutes, { prefix: '/api/v1/edge', trustedProxies: config.TRUST_PROXY }),
      (app) => app.register(pageRoutes)
    ]
  }
}
