import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import type { RedisConfig } from '../redis/index.js'
import { rateLimiterDefaults } from './options.js'
import { presets } from './policies.js'

export const rateLimitConfigFragment = {
  properties: {
    RATE_LIMIT_ENABLED: { type: 'boolean', default: true, description: 'Apply rate limits (false: no limiter, e.g. for benchmarks of other parts)' },
    RATE_LIMIT_WINDOW_MS: { type: 'integer', default: presets.default.windowMs, minimum: 1, description: 'Window of the default preset in ms' },
    RATE_LIMIT_MAX_REQUESTS: { type: 'integer', default: presets.default.limit, minimum: 1, description: 'Requests the default preset admits per window' },
    RATE_LIMIT_API_KEY_MAX_REQUESTS: { type: 'integer', default: presets.apiKey.limit, minimum: 1, description: 'Requests the apiKey preset admits per minute for each key' },
    RATE_LIMIT_PREFIX: { type: 'string', default: rateLimiterDefaults.prefix, description: 'Prefix of rate-limit keys in Redis' },
    RATE_LIMIT_ALLOWLIST: { type: 'string', default: '', description: 'Comma-separated CIDRs or addresses never limited (internal services)' },
    RATE_LIMIT_ON_STORE_FAILURE: { type: 'string', default: 'open', enum: ['open', 'closed'], description: 'With Redis down: open admits in memory each instance its share of a limit, closed answers 503' }
  }
} as const satisfies ConfigFragment

/** The limiter's variables, and the Redis command budget its store keeps to. */
export type RateLimitConfig = ConfigOf<typeof rateLimitConfigFragment> & Pick<RedisConfig, 'REDIS_COMMAND_TIMEOUT_MS'>

export function rateLimitOptionsFromConfig (config: RateLimitConfig): import('./plugin.js').RateLimitPluginOptions {
  const onStoreFailure = config.RATE_LIMIT_ON_STORE_FAILURE
  return {
    prefix: config.RATE_LIMIT_PREFIX,
    timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    allowList: config.RATE_LIMIT_ALLOWLIST.split(',').map((s) => s.trim()).filter(Boolean),
    presets: {
      default: { windowMs: config.RATE_LIMIT_WINDOW_MS, limit: config.RATE_LIMIT_MAX_REQUESTS, onStoreFailure },
      apiKey: { limit: config.RATE_LIMIT_API_KEY_MAX_REQUESTS, onStoreFailure },
      strict: { onStoreFailure }
    }
  }
}
