export { ApiKeyStore, type ApiKeyIdentity, type MintedKey } from './key-store.js'
export { apiKeysPlugin, type ApiKeysPluginOptions } from './plugin.js'
export { apiKeysConfigFragment, type ApiKeysConfig } from './config.js'
