import { composeSchema, loadConfig, type ConfigFragment } from '@lead-chassis/plugins/chassis'

export const scriptsConfigFragment = {
  properties: {
    DATABASE_URL: { type: 'string', format: 'postgres-url', description: 'PostgreSQL URL; unset with `npm start` starts an embedded PostgreSQL' },
    DB_SCHEMA: { type: 'string', default: 'public', description: 'Schema first on the search_path of every connection' },
    EMBEDDED_PG_PORT: { type: 'integer', default: 54329, minimum: 1, maximum: 65535, description: 'Port of the embedded PostgreSQL started when DATABASE_URL is unset' },
    EMBEDDED_PG_DATA_DIR: { type: 'string', default: '.data/postgres', description: 'Data folder of the embedded PostgreSQL (git-ignored; reused across starts)' },
    API_PORT: { type: 'integer', default: 3000, minimum: 1, maximum: 65535, description: 'Port `npm start` gives the api service' },
    DATA_SERVICE_PORT: { type: 'integer', default: 3001, minimum: 1, maximum: 65535, description: 'Port `npm start` gives the data-service' },
    ORCHESTRATOR_PORT: { type: 'integer', default: 3002, minimum: 1, maximum: 65535, description: 'Port `npm start` gives the orchestrator' },
    SEED_COUNT: { type: 'integer', default: 10000, minimum: 0, description: 'Demo leads seeded by `npm start` when the leads table is empty' },
    CACHE_PREFIX: { type: 'string', default: 'app:', description: 'Prefix of every cache key and channel in Redis' },
    REDIS_URL: { type: 'string', format: 'redis-url', description: 'Redis URL shared by cache and rate limiter; unset runs single-instance with in-process stores' }
  }
} as const satisfies ConfigFragment

export interface ScriptsConfig {
  DATABASE_URL?: string
  DB_SCHEMA: string
  EMBEDDED_PG_PORT: number
  EMBEDDED_PG_DATA_DIR: string
  SEED_COUNT: number
  API_PORT: number
  DATA_SERVICE_PORT: number
  ORCHESTRATOR_PORT: number
  REDIS_URL?: string
  CACHE_PREFIX: string
}

export function loadScriptsConfig (): Readonly<ScriptsConfig> {
  return loadConfig<ScriptsConfig>(composeSchema(scriptsConfigFragment))
}
