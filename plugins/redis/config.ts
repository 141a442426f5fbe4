import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import { MAX_BUDGET_MS } from './budget.js'
import { redisClientDefaults } from './client.js'

export const redisConfigFragment = {
  properties: {
    REDIS_URL: { type: 'string', format: 'redis-url', description: 'Redis URL shared by cache and rate limiter; unset runs single-instance with in-process stores' },
    REDIS_CLUSTER: { type: 'boolean', default: redisClientDefaults.cluster, description: 'Treat REDIS_URL as a seed node of a Redis Cluster' },
    REDIS_COMMAND_TIMEOUT_MS: { type: 'integer', default: redisClientDefaults.commandTimeoutMs, minimum: 1, maximum: MAX_BUDGET_MS, description: 'Time budget of one Redis command (a late-running process stretches it, up to 10x); slower commands fail and the service degrades' }
  }
} as const satisfies ConfigFragment

export type RedisConfig = ConfigOf<typeof redisConfigFragment>
