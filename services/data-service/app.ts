import type { FastifyInstance } from 'fastify'
import { buildService, type ServiceDefinition } from '@lead-chassis/plugins/chassis'
import { platformPlugins, preparePlatform, type PlatformOptions } from '../platform/platform.js'
import type { DataServiceConfig } from './config.js'
import { importRoutes } from './routes/imports.js'
import { leadLookupRoutes } from './routes/leads.js'
import { reportRoutes } from './routes/reports.js'

export interface BuildDataServiceOptions extends PlatformOptions {
  logger?: ServiceDefinition['logger']
}

/** The data-service (imports, reports, lookups), not listening: `inject` in tests, `runService` in the entry. */
export async function buildDataService (config: DataServiceConfig, options: BuildDataServiceOptions = {}): Promise<FastifyInstance> {
  await preparePlatform(config)
  return buildService({
    name: 'data-service',
    config,
    openapi: { prefix: '/data/v1', title: 'Data service', description: 'Bulk lead imports (CSV, NDJSON), reports, and the lead lookups other services make.' },
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    plugins: platformPlugins('data-service', config, options),
    routes: [
      (app) => app.register(importRoutes, { prefix: '/data/v1/imports', maxBytes: config.IMPORT_MAX_BYTES, batchSize: config.IMPORT_BATCH_SIZE, maxRejections: config.IMPORT_MAX_REJECTIONS, maxRecordBytes: config.IMPORT_MAX_RECORD_BYTES, maxConcurrent: config.IMPORT_MAX_CONCURRENT, requestTimeoutMs: config.REQUEST_TIMEOUT_MS }),
      (app) => app.register(reportRoutes, { prefix: '/data/v1/reports', ttl: config.REPORT_CACHE_TTL, cache: config.CACHE_ENABLED }),
      (app) => app.register(leadLookupRoutes, { prefix: '/data/v1/leads' })
    ]
  })
}
