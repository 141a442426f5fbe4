import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { loadApiConfig, type ApiConfig } from '../../services/api/config.js'
import { migrate } from '../../services/domain/migrate.js'

/** The shared PostgreSQL of the machine; tests isolate themselves in schemas of their own. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface TestSchema {
  schema: string
  url: string
  /** Runs SQL outside any pool under test, on the test schema. */
  sql: <R extends object = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>
  drop: () => Promise<void>
}

export function uniqueName (prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
}

/** A fresh schema with every migration applied. Drop it in `after`. */
export async function createTestSchema (url = TEST_DATABASE_URL): Promise<TestSchema> {
  const schema = uniqueName('t')
  await migrate({ databaseUrl: url, schema })
  const sql = async <R extends object>(text: string, params: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` })
    await client.connect()
    try {
      return (await client.query<R>(text, params)).rows
    } finally {
      await client.end()
    }
  }
  return {
    schema,
    url,
    sql,
    drop: async () => { await sql(`DROP SCHEMA ${schema} CASCADE`) }
  }
}

/** The service key test configurations carry: requests presenting it act as another service of the platform. */
export const TEST_SERVICE_KEY = 'test-service-key-0123456789abcdefghijklmnop'
export const SERVICE_HEADERS = { 'x-service-key': TEST_SERVICE_KEY }

type InjectArg = string | { url?: string, headers?: Record<string, string>, [k: string]: unknown }

/** An `inject` that adds headers (the service key by default) to every request. */
export function authed<A extends { inject: (opts: never) => unknown }> (app: A, headers: Record<string, string> = SERVICE_HEADERS): { inject: (opts: InjectArg) => ReturnType<A['inject']> } {
  return {
    inject: (opts: InjectArg) => {
      const o = typeof opts === 'string' ? { url: opts } : opts
      return app.inject({ ...o, headers: { ...headers, ...(o.headers ?? {}) } } as never) as ReturnType<A['inject']>
    }
  }
}

/** The environment every test service starts from: the test schema, a small pool, no .env file. */
export function testEnv (schema: TestSchema, env: Record<string, string> = {}): Record<string, string> {
  // Load shedding off: tests drive the event loop hard on purpose and assert on what the features answer.
  return { DATABASE_URL: schema.url, DB_SCHEMA: schema.schema, DB_POOL_MIN: '1', DB_POOL_MAX: '5', LOG_LEVEL: 'silent', NODE_ENV: 'test', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', RATE_LIMIT_ENABLED: 'false', SERVICE_API_KEY: TEST_SERVICE_KEY, ...env }
}

/** An api configuration for tests. */
export function testApiConfig (schema: TestSchema, env: Record<string, string> = {}): ApiConfig {
  return loadApiConfig({ dotenv: false, env: testEnv(schema, env) }) as ApiConfig
}
