import { startService } from '../../plugins/chassis/index.js'
import { buildOrchestrator } from './app.js'
import { loadOrchestratorConfig } from './config.js'

await startService('orchestrator', loadOrchestratorConfig, (config) => buildOrchestrator(config))
