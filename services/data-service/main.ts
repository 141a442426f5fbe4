import { startService } from '../../plugins/chassis/index.js'
import { buildDataService } from './app.js'
import { loadDataServiceConfig } from './config.js'

await startService('data-service', loadDataServiceConfig, (config) => buildDataService(config))
