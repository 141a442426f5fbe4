import type { ConfigFragment } from '../chassis/index.js'

export const apiKeysConfigFragment = {
  properties: {
    API_KEY_CACHE_TTL: { type: 'integer', default: 30, minimum: 0, description: 'Seconds a verified API key stays cached; with a shared Redis a revocation is immediate' }
  }
} as const satisfies ConfigFragment

export interface ApiKeysConfig {
  API_KEY_CACHE_TTL: number
}
