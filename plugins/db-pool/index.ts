export {
  ConnectionPool, createConnectionPool, poolDefaults, replicaDefaults, CLIENT_TIMEOUT_MARGIN_MS, KEEPALIVE_INITIAL_DELAY_MS,
  type ConnectionPoolOptions, type IsolationLevel, type PoolHealth, type PoolLogger, type PoolMetrics,
  type QueryOptions, type QueryResult, type ReplicaMetrics, type ReplicaOptions, type TransactionClient, type TransactionOptions
} from './pool.js'
export { NotificationListener, listenerDefaults, type NotificationHandlers, type NotificationListenerOptions } from './listener.js'
export { DatabaseError, PoolErrors, isConnectionError, toDatabaseError, type DatabaseErrorCode } from './errors.js'
export { QUERY_CHANNEL_NAME, queryChannel, type QueryContext } from './channel.js'
export { dbPoolConfigFragment, poolOptionsFromConfig, type DbPoolConfig } from './config.js'
export { dbPoolPlugin, READ_AFTER_HEADER, type DbPoolPluginOptions } from './plugin.js'
export { formatLsn, parseLsn } from './read-context.js'
export { replicaAddress, type ReadReason, type ReadTarget, type ReplicaState } from './replicas.js'
