import { buildService, startService } from '@lead-chassis/plugins/chassis'
import { apiDefinition } from '../../services/api/app.js'
import { loadApiConfig } from '../../services/api/config.js'

// The api built without `preparePlatform`: PostgreSQL's parser is loaded by the query statistics plugin while the
// app registers (bench:next-tick compares it with the api as it starts).
await startService('api', loadApiConfig, (config) => buildService(apiDefinition(config)))
