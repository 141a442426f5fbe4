import { chassisConfigFragment, composeSchema, loadConfig, type ChassisConfig, type ConfigFragment, type LoadConfigOptions } from '../../plugins/chassis/index.js'
import { dbPoolConfigFragment, type DbPoolConfig } from '../../plugins/db-pool/index.js'
import { redisConfigFragment, type RedisConfig } from '../../plugins/redis/index.js'
import { cacheConfigFragment, type CacheConfig } from '../../plugins/cache/index.js'
import { rateLimitConfigFragment, type RateLimitConfig } from '../../plugins/rate-limit/index.js'
import { apiKeysConfigFragment, type ApiKeysConfig } from '../../plugins/api-keys/index.js'
import { queryStatsConfigFragment, type QueryStatsConfig } from '../../plugins/telemetry/index.js'

const apiFragment = {
  properties: {
    PORT: { type: 'integer', default: 3000, minimum: 0, maximum: 65535, description: 'Port of the api service' },
    LEAD_BODY_LIMIT_BYTES: { type: 'integer', default: 16384, minimum: 1024, description: 'Largest lead body accepted by POST and PATCH; larger gets 413' }
  }
} as const satisfies ConfigFragment

export const apiConfigSchema = composeSchema(chassisConfigFragment, dbPoolConfigFragment, redisConfigFragment, cacheConfigFragment, rateLimitConfigFragment, apiKeysConfigFragment, queryStatsConfigFragment, apiFragment)

export interface ApiConfig extends ChassisConfig, DbPoolConfig, RedisConfig, CacheConfig, RateLimitConfig, ApiKeysConfig, QueryStatsConfig {
  LEAD_BODY_LIMIT_BYTES: number
}

export function loadApiConfig (options?: LoadConfigOptions): Readonly<ApiConfig> {
  return loadConfig<ApiConfig>(apiConfigSchema, options)
}
