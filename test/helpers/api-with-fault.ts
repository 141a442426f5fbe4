import { startService } from '@lead-chassis/plugins/chassis'
import { buildApp } from '../../services/api/app.js'
import { loadApiConfig } from '../../services/api/config.js'

// The api as its entry starts it, with the fault API_FAULT names: `uncaught-error`, a route (GET /fault) after which
// an error nobody catches is thrown, as a library's callback bug does; `hanging-close`, an onClose hook that never
// ends, as a client stuck closing does. Started by services/api/main.test.ts and services/api/tracing.test.ts.
const fault = process.env.API_FAULT
await startService('api', loadApiConfig, async (config) => {
  const app = await buildApp(config)
  if (fault === 'uncaught-error') {
    app.get('/fault', async () => {
      setImmediate(() => { throw new Error('a bug nobody caught') })
      return 'scheduled'
    })
  }
  if (fault === 'hanging-close') app.addHook('onClose', () => new Promise<void>(() => {}))
  return app
})
