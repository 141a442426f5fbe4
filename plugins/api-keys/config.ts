import type { ConfigFragment, ConfigOf } from '../chassis/index.js'

export const apiKeysConfigFragment = {
  properties: {
    SERVICE_API_KEY: { type: 'string', default: '', pattern: '^(|.{32,})$', patternMessage: 'must be empty or at least 32 characters', description: 'Shared secret services present in x-service-key when calling each other (from the Secret; empty disables)' },
    API_KEY_CACHE_TTL: { type: 'integer', default: 30, minimum: 0, description: 'Seconds a verified API key stays cached; a revocation drops it on every instance within a second (PostgreSQL LISTEN/NOTIFY)' },
    API_KEY_LOOKUP_LIMIT: { type: 'integer', default: 50, minimum: 0, description: 'Lookups of keys an instance has not verified that one address may cause per window; over it 429 before any lookup (0 disables)' },
    API_KEY_LOOKUP_WINDOW_MS: { type: 'integer', default: 60000, minimum: 1000, description: 'Window of API_KEY_LOOKUP_LIMIT in ms' }
  }
} as const satisfies ConfigFragment

export type ApiKeysConfig = ConfigOf<typeof apiKeysConfigFragment>
