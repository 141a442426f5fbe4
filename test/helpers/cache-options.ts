import { composeSchema, loadConfig } from '@lead-chassis/plugins/chassis'
import { cacheConfigFragment, cacheOptionsFromConfig, type CacheConfig, type CacheOptions } from '@lead-chassis/plugins/cache'

/**
 * One cache option as a service reads it from its variable (loadConfig, then cacheOptionsFromConfig), so that a test
 * which sets the variable sees what the variable does, not only what the option does.
 */
export function cacheOptionFromEnv<K extends keyof CacheOptions> (option: K, env: Record<string, string>): Pick<CacheOptions, K> {
  const options = cacheOptionsFromConfig(loadConfig<CacheConfig>(composeSchema(cacheConfigFragment), { dotenv: false, env }))
  return { [option]: options[option] } as Pick<CacheOptions, K>
}
