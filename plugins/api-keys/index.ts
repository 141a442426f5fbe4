export { ApiKeyStore, type ApiKeyIdentity, type MintedKey, type VerifyOptions } from './key-store.js'
export { apiKeysPlugin, type ApiKeysPluginOptions, type LookupBudgetOptions } from './plugin.js'
export { apiKeysConfigFragment, type ApiKeysConfig } from './config.js'
export { ApiKeyErrors } from './errors.js'
