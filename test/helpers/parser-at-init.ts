import { channel } from 'node:diagnostics_channel'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { normalizeQuery } from '@lead-chassis/plugins/telemetry'
import { buildApp } from '../../services/api/app.js'
import { loadApiConfig } from '../../services/api/config.js'
import { buildDataService } from '../../services/data-service/app.js'
import { loadDataServiceConfig } from '../../services/data-service/config.js'
import { buildOrchestrator } from '../../services/orchestrator/app.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'

// Prints whether PostgreSQL's parser was loaded when the service's Fastify instance was created (Fastify publishes
// `fastify.initialization` then), and once the service was built: `node parser-at-init.js <service>`, QUERY_STATS_ENABLED from the environment.
const env = { DATABASE_URL: 'postgres://none@127.0.0.1:1/none', SERVICE_API_KEY: 'parser-at-init-never-sent-anywhere', QUERY_STATS_ENABLED: process.env.QUERY_STATS_ENABLED ?? 'true' }
let loaded: boolean | undefined
channel('fastify.initialization').subscribe(() => { loaded ??= normalizeQuery('SELECT 1 WHERE a = 2').parsed })
const pool = createConnectionPool({ connectionString: env.DATABASE_URL, min: 0, healthCheckInterval: 0 })
const options = { pool, logger: false as const, describeOnly: true }
const service = process.argv[2]
const app = service === 'api'
  ? await buildApp(loadApiConfig({ dotenv: false, env }), options)
  : service === 'data-service'
    ? await buildDataService(loadDataServiceConfig({ dotenv: false, env }), options)
    : await buildOrchestrator(loadOrchestratorConfig({ dotenv: false, env }), options)
await app.close()
await pool.close()
console.log(JSON.stringify({ loaded, built: normalizeQuery('SELECT 1 WHERE a = 2').parsed }))
