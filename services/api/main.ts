import { redactConfig, runService } from '../../plugins/chassis/index.js'
import { buildApp } from './app.js'
import { loadApiConfig } from './config.js'

try {
  const config = loadApiConfig()
  const app = await buildApp(config)
  app.log.info({ config: redactConfig({ ...config }) }, 'configuration loaded')
  await runService(app, config)
} catch (error) {
  // Bad configuration or an unreachable required dependency: stop before listening, with every problem named.
  const e = error as { code?: string, message: string }
  console.error(JSON.stringify({ level: 'fatal', service: 'api', code: e.code ?? 'START_FAILED', msg: e.message }))
  process.exit(1)
}
