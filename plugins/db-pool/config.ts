import { MAX_TIMER_MS, type ConfigFragment, type ConfigOf } from '../chassis/index.js'
import { CLIENT_TIMEOUT_MARGIN_MS, poolDefaults, type ConnectionPoolOptions } from './pool.js'

export const dbPoolConfigFragment = {
  properties: {
    DATABASE_URL: { type: 'string', format: 'postgres-url', description: 'PostgreSQL URL; unset with `npm start` starts an embedded PostgreSQL' },
    DB_SCHEMA: { type: 'string', default: 'public', description: 'Schema first on the search_path of every connection' },
    DB_POOL_MIN: { type: 'integer', default: poolDefaults.min, minimum: 0, maxOf: 'DB_POOL_MAX', description: 'Connections opened at start and kept open' },
    DB_POOL_MAX: { type: 'integer', default: poolDefaults.max, minimum: 1, description: 'Connections never exceeded' },
    DB_POOL_IDLE_TIMEOUT: { type: 'integer', unit: 'ms', default: poolDefaults.idleTimeoutMillis, minimum: 0, description: 'Idle connection above the minimum closed after this many ms; 0 never closes one' },
    DB_CONNECTION_TIMEOUT: { type: 'integer', unit: 'ms', default: poolDefaults.connectionTimeoutMillis, minimum: 1, description: 'Waiting longer than this many ms for a connection fails with 503 (capped by the client-side bound of DB_QUERY_TIMEOUT)' },
    // The client-side bound adds the margin, and must stay a timer Node.js keeps.
    DB_QUERY_TIMEOUT: { type: 'integer', unit: 'ms', default: poolDefaults.queryTimeoutMillis, minimum: 0, maximum: MAX_TIMER_MS - CLIENT_TIMEOUT_MARGIN_MS, description: 'Server-side statement_timeout in ms; plus 500 ms, also the client-side bound on waiting for a connection plus a statement (503 DB_UNAVAILABLE, connection destroyed; a statement with under 5 ms of it left is not sent, the connection kept); 0 disables both' },
    DB_HEALTH_CHECK_INTERVAL: { type: 'integer', unit: 'ms', default: poolDefaults.healthCheckInterval, minimum: 0, description: 'Period in ms of the pool health check and refill to the minimum (0 disables)' },
    DB_TRANSACTION_RETRIES: { type: 'integer', default: poolDefaults.transactionRetries, minimum: 0, description: 'Re-runs of a transaction after a serialization failure or deadlock' },
    DATABASE_REPLICA_URLS: {
      type: 'string',
      default: '',
      pattern: '^(\\s*postgres(ql)?://[^,\\s]+\\s*(,\\s*postgres(ql)?://[^,\\s]+\\s*)*)?$',
      patternMessage: 'must be comma-separated postgres:// URLs',
      description: 'Comma-separated postgres:// URLs of streaming replicas of DATABASE_URL for marked reads; empty: every read goes to the primary'
    },
    DB_REPLICA_POOL_MAX: { type: 'integer', default: 10, minimum: 1, description: 'Connections never exceeded per replica (opened on demand)' },
    DB_REPLICA_WAIT_MS: { type: 'integer', default: 1000, minimum: 0, description: 'Longest a read that must see a write waits in ms for a replica to replay it before it goes to the primary' },
    DB_REPLICA_HEALTH_CHECK_INTERVAL: { type: 'integer', unit: 'ms', default: 1000, minimum: 0, description: 'Period in ms of the replica check (recovery state, replay position, lag); a failed check skips the replica until one passes (0: at start only)' }
  },
  required: ['DATABASE_URL']
} as const satisfies ConfigFragment

export type DbPoolConfig = ConfigOf<typeof dbPoolConfigFragment>

export function poolOptionsFromConfig (config: DbPoolConfig, name = 'main'): ConnectionPoolOptions {
  const replicaUrls = (config.DATABASE_REPLICA_URLS ?? '').split(',').map((u) => u.trim()).filter((u) => u.length > 0)
  return {
    name,
    connectionString: config.DATABASE_URL,
    schema: config.DB_SCHEMA,
    min: config.DB_POOL_MIN,
    max: config.DB_POOL_MAX,
    idleTimeoutMillis: config.DB_POOL_IDLE_TIMEOUT,
    connectionTimeoutMillis: config.DB_CONNECTION_TIMEOUT,
    queryTimeoutMillis: config.DB_QUERY_TIMEOUT,
    healthCheckInterval: config.DB_HEALTH_CHECK_INTERVAL,
    transactionRetries: config.DB_TRANSACTION_RETRIES,
    ...(replicaUrls.length > 0
      ? { replicas: { urls: replicaUrls, max: config.DB_REPLICA_POOL_MAX, waitMillis: config.DB_REPLICA_WAIT_MS, healthCheckInterval: config.DB_REPLICA_HEALTH_CHECK_INTERVAL } }
      : {})
  }
}
