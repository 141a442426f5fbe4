import { startService } from '@lead-chassis/plugins/chassis'
import { buildApp } from './app.js'
import { loadApiConfig } from './config.js'

await startService('api', loadApiConfig, (config) => buildApp(config))
