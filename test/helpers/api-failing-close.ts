import { startService } from '@lead-chassis/plugins/chassis'
import { buildApp } from '../../services/api/app.js'
import { loadApiConfig } from '../../services/api/config.js'

// The api as its entry starts it, with one more onClose hook that throws, as a client that fails to close does: its
// `app.close()` rejects at shutdown. Started by services/api/tracing.test.ts.
await startService('api', loadApiConfig, async (config) => {
  const app = await buildApp(config)
  app.addHook('onClose', async () => { throw new Error('a client failed to close') })
  return app
})
