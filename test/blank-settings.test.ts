import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { apiConfigSchema, loadApiConfig } from '../services/api/config.js'
import { dataServiceConfigSchema, loadDataServiceConfig } from '../services/data-service/config.js'
import { loadOrchestratorConfig, orchestratorConfigSchema } from '../services/orchestrator/config.js'

// An env file or a manifest often writes a variable it means to leave out as `NAME=` (empty) or `NAME= ` (a stray
// space): the first must be unset, the second refused, never read as 0 by type coercion.
const DATABASE_URL = 'postgres://app@db.internal:5432/leads'
// The orchestrator cannot start without a service key; the others take it too.
const SERVICE_API_KEY = 'blank-settings-service-key-0123456789abcdef'
const services = [
  { name: 'api', load: loadApiConfig, schema: apiConfigSchema, integers: ['PORT', 'LEAD_BODY_LIMIT_BYTES', 'API_KEY_CACHE_TTL'] },
  { name: 'data-service', load: loadDataServiceConfig, schema: dataServiceConfigSchema, integers: ['PORT', 'IMPORT_MAX_BYTES', 'RATE_LIMIT_WINDOW_MS'] },
  { name: 'orchestrator', load: loadOrchestratorConfig, schema: orchestratorConfigSchema, integers: ['PORT', 'DATA_SERVICE_RETRIES', 'ROUTING_BATCH_MAX'] }
] as const

const load = (loader: (options: LoadConfigOptions) => object, env: Record<string, string>) =>
  loader({ dotenv: false, env: { DATABASE_URL, SERVICE_API_KEY, ...env } }) as Record<string, unknown>

test('each service takes the default of an integer setting left empty, not 0', () => {
  for (const service of services) {
    const config = load(service.load, Object.fromEntries(service.integers.map((name) => [name, ''])))
    for (const name of service.integers) {
      const declared = service.schema.properties[name]?.default
      assert.notEqual(declared, undefined, `${service.name} ${name} has a default`)
      assert.equal(config[name], declared, `${service.name} ${name}`)
    }
  }
})

test('each service refuses an integer setting that is only whitespace, naming it', () => {
  for (const service of services) {
    for (const name of service.integers) {
      assert.throws(() => load(service.load, { [name]: ' ' }), (e: Error & { code: string }) => {
        assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
        assert.match(e.message, new RegExp(`${name} is blank`))
        return true
      }, `${service.name} ${name}`)
    }
  }
})
