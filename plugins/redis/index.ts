export { createRedisClient, isCluster, type RedisClient, type RedisClientOptions } from './client.js'
export { redisConfigFragment, type RedisConfig } from './config.js'
export { redisPlugin, type RedisPluginOptions } from './plugin.js'
