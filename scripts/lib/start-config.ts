import { composeSchema, loadConfig, type ConfigFragment } from '@lead-chassis/plugins/chassis'
import { apiKeysConfigFragment } from '@lead-chassis/plugins/api-keys'
import { scriptsConfigFragment, type ScriptsConfig } from './config.js'

/**
 * What `npm start` alone reads beside the scripts' variables: the service key it hands every service, read through
 * the loader so that a .env sets it as the real environment does (the services are given it explicitly, which wins
 * over their own reading of .env). Apart from the other scripts' schema: migrate, seed and keys never use it, and
 * must not refuse to run over it.
 */
const startConfigFragment = {
  properties: { SERVICE_API_KEY: apiKeysConfigFragment.properties.SERVICE_API_KEY }
} as const satisfies ConfigFragment

export function loadStartConfig (): Readonly<ScriptsConfig & { SERVICE_API_KEY: string }> {
  return loadConfig<ScriptsConfig & { SERVICE_API_KEY: string }>(composeSchema(scriptsConfigFragment, startConfigFragment))
}
