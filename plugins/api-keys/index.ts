export { ApiKeyStore, type ApiKeyIdentity, type KeyChange, type MintedKey } from './key-store.js'
export { KEY_CHANGE_CHANNEL, followKeyChanges } from './key-changes.js'
export { apiKeysPlugin, type ApiKeysPluginOptions } from './plugin.js'
export { apiKeysConfigFragment, type ApiKeysConfig } from './config.js'
