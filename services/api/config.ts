import { composeSchema, loadConfig, type ConfigFragment, type ConfigOf, type LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { platformConfigFragments, type PlatformConfig } from '../platform/platform.js'

const apiFragment = {
  properties: {
    PORT: { type: 'integer', default: 3000, minimum: 0, maximum: 65535, description: 'Port of the api service' },
    LEAD_BODY_LIMIT_BYTES: { type: 'integer', default: 16384, minimum: 1024, maxOf: 'BODY_LIMIT_BYTES', description: 'Largest lead body accepted by POST and PATCH; larger gets 413. A tighter limit within BODY_LIMIT_BYTES, so it must not exceed it' }
  }
} as const satisfies ConfigFragment

export const apiConfigSchema = composeSchema(...platformConfigFragments, apiFragment)

export type ApiConfig = PlatformConfig & ConfigOf<typeof apiFragment>

export function loadApiConfig (options?: LoadConfigOptions): Readonly<ApiConfig> {
  return loadConfig<ApiConfig>(apiConfigSchema, options)
}
