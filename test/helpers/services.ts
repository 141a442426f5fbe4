import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { buildDataService } from '../../services/data-service/app.js'
import { loadDataServiceConfig } from '../../services/data-service/config.js'
import { buildOrchestrator } from '../../services/orchestrator/app.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'
import { testApiConfig, testEnv, type TestSchema } from './database.js'

type After = { after: (fn: () => Promise<void>) => void }

/** An api on the test schema, not listening (inject); the caller closes it. */
export async function buildTestApi (db: TestSchema, env: Record<string, string> = {}): Promise<FastifyInstance> {
  return buildApp(testApiConfig(db, env))
}

/** A data-service on the test schema, not listening until the caller says so; the caller closes it. */
export async function buildTestDataService (db: TestSchema, env: Record<string, string> = {}): Promise<FastifyInstance> {
  return buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, env) }))
}

/** A data-service configured by `env` alone (e.g. on a database of the test's own), not listening; the caller closes it. */
export async function buildDataServiceFromEnv (env: Record<string, string>): Promise<FastifyInstance> {
  return buildDataService(loadDataServiceConfig({ dotenv: false, env }))
}

/** A data-service listening on a loopback port (the orchestrator calls it over HTTP), closed after the test. */
export async function startDataService (t: After, db: TestSchema, env: Record<string, string> = {}, port = 0): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildTestDataService(db, env)
  const url = await app.listen({ host: '127.0.0.1', port })
  t.after(() => app.close())
  return { app, url }
}

/** An orchestrator calling the given data-service, not listening (inject) unless `listen`. */
export async function startOrchestrator (t: After, db: TestSchema, dataServiceUrl: string, env: Record<string, string> = {}, listen = false): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildOrchestrator(loadOrchestratorConfig({ dotenv: false, env: testEnv(db, { DATA_SERVICE_URL: dataServiceUrl, ...env }) }))
  t.after(() => app.close())
  const url = listen ? await app.listen({ host: '127.0.0.1', port: 0 }) : ''
  return { app, url }
}

/** Agents for routing tests: each licensed for the given states and products. */
export async function insertAgents (db: TestSchema, agents: Array<{ name: string, capacity: number, states?: string[], products?: string[] }>): Promise<string[]> {
  const ids: string[] = []
  for (const a of agents) {
    const [row] = await db.sql<{ id: string }>('INSERT INTO agents (name, email, states, products, capacity) VALUES ($1, $2, $3, $4, $5) RETURNING id',
      [a.name, `${a.name.toLowerCase()}@agents.example`, a.states ?? ['CA'], a.products ?? ['auto'], a.capacity])
    if (row) ids.push(row.id)
  }
  return ids
}

/** n new leads in CA for auto (unless told otherwise), ids returned. */
export async function insertLeads (db: TestSchema, n: number, state = 'CA', product = 'auto'): Promise<string[]> {
  const rows = await db.sql<{ id: string }>(
    `INSERT INTO leads (first_name, last_name, email, product, state) SELECT 'Lead', 'N' || i, 'lead' || i || '.' || $3 || '.' || md5(random()::text) || '@example.com', $2, $3 FROM generate_series(1, $1) AS i RETURNING id`,
    [n, product, state])
  return rows.map((r) => r.id)
}
