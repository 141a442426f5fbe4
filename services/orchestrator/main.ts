import { startService } from '@lead-chassis/plugins/chassis'
import { buildOrchestrator } from './app.js'
import { loadOrchestratorConfig } from './config.js'

await startService('orchestrator', loadOrchestratorConfig, (config) => buildOrchestrator(config))
