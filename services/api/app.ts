import type { FastifyInstance } from 'fastify'
import { buildService, type ServiceDefinition } from '../../plugins/chassis/index.js'
import { dbPoolPlugin, poolOptionsFromConfig, type ConnectionPool } from '../../plugins/db-pool/index.js'
import type { ApiConfig } from './config.js'
import { leadRoutes } from './routes/leads.js'

export interface BuildApiOptions {
  logger?: ServiceDefinition['logger']
  /** A pool to share instead of opening one (tests); it is not closed with the app. */
  pool?: ConnectionPool
}

/** The api service, not listening: use `inject` in tests, `runService` in the entry. */
export async function buildApp (config: ApiConfig, options: BuildApiOptions = {}): Promise<FastifyInstance> {
  return buildService({
    name: 'api',
    config,
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    plugins: [
      (app) => app.register(dbPoolPlugin, options.pool ? { pool: options.pool } : poolOptionsFromConfig(config))
    ],
    routes: [
      (app) => app.register(leadRoutes, { prefix: '/api/v1/leads', bodyLimit: config.LEAD_BODY_LIMIT_BYTES })
    ]
  })
}
