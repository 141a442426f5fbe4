import { startService } from '../../plugins/chassis/index.js'
import { buildApp } from './app.js'
import { loadApiConfig } from './config.js'

await startService('api', loadApiConfig, (config) => buildApp(config))
