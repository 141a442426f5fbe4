import { startService } from '@lead-chassis/plugins/chassis'
import { buildDataService } from './app.js'
import { loadDataServiceConfig } from './config.js'

await startService('data-service', loadDataServiceConfig, (config) => buildDataService(config))
