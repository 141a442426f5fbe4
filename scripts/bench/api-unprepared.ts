import { buildService, startService } from '@lead-chassis/plugins/chassis'
import { apiDefinition } from '../../services/api/app.js'
import { loadApiConfig } from '../../services/api/config.js'

// The api built without `preparePlatform`: PostgreSQL's parser is loaded by the query statistics plugin while the
// app registers, as it was before the services loaded it first (bench:next-tick compares the two).
await startService('api', loadApiConfig, (config) => buildService(apiDefinition(config)))
