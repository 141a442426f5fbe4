export {
  ConnectionPool, createConnectionPool, poolDefaults, CLIENT_TIMEOUT_MARGIN_MS, KEEPALIVE_INITIAL_DELAY_MS,
  type ConnectionPoolOptions, type IsolationLevel, type PoolHealth, type PoolLogger, type PoolMetrics,
  type QueryResult, type TransactionClient, type TransactionOptions
} from './pool.js'
export { NotificationListener, listenerDefaults, type NotificationHandlers, type NotificationListenerOptions } from './listener.js'
export { DatabaseError, PoolErrors, isConnectionError, toDatabaseError, type DatabaseErrorCode } from './errors.js'
export { QUERY_CHANNEL_NAME, queryChannel, type QueryContext } from './channel.js'
export { dbPoolConfigFragment, poolOptionsFromConfig, type DbPoolConfig } from './config.js'
export { dbPoolPlugin, type DbPoolPluginOptions } from './plugin.js'
