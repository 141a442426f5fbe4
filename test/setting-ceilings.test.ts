import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_TIMER_MS, type ConfigSchema, type LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { apiConfigSchema, loadApiConfig } from '../services/api/config.js'
import { dataServiceConfigSchema, loadDataServiceConfig } from '../services/data-service/config.js'
import { loadOrchestratorConfig, orchestratorConfigSchema } from '../services/orchestrator/config.js'

// Node.js fires a timer longer than 2^31-1 ms after 1 ms: SHUTDOWN_TIMEOUT_MS=2147483648 forced the exit at once on
// SIGTERM, HEALTH_CHECK_TIMEOUT_MS=3000000000 failed every readiness check. Such values must stop the service at start.
const DATABASE_URL = 'postgres://app@db.internal:5432/leads'
const SERVICE_API_KEY = 'k'.repeat(32)
const load = (loader: (options: LoadConfigOptions) => object, env: Record<string, string>) =>
  loader({ dotenv: false, env: { DATABASE_URL, SERVICE_API_KEY, ...env } }) as Record<string, unknown>

const refusedAt = (loader: (options: LoadConfigOptions) => object, name: string, value: string, maximum: number): void => {
  assert.throws(() => load(loader, { [name]: value }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
    assert.equal(e.message, `Invalid configuration: ${name} must be at most ${maximum}`)
    return true
  }, `${name}=${value}`)
}

test('a millisecond setting longer than a Node.js timer keeps (2^31-1 ms) stops each service at start, naming it and the maximum', () => {
  const cases = [
    [loadApiConfig, 'SHUTDOWN_TIMEOUT_MS'],
    [loadApiConfig, 'HEALTH_CHECK_TIMEOUT_MS'],
    [loadApiConfig, 'API_KEY_LOOKUP_WINDOW_MS'],
    [loadDataServiceConfig, 'DB_POOL_IDLE_TIMEOUT'],
    [loadDataServiceConfig, 'CACHE_ACK_TIMEOUT_MS'],
    [loadDataServiceConfig, 'SLOW_QUERY_THRESHOLD_MS'],
    [loadOrchestratorConfig, 'DATA_SERVICE_BREAKER_COOLDOWN_MS'],
    [loadOrchestratorConfig, 'DB_HEALTH_CHECK_INTERVAL']
  ] as const
  for (const [loader, name] of cases) {
    refusedAt(loader, name, '2147483648', MAX_TIMER_MS)
    refusedAt(loader, name, '9999999999999999999999999', MAX_TIMER_MS)
    assert.equal(load(loader, { [name]: String(MAX_TIMER_MS) })[name], MAX_TIMER_MS, name)
  }
})

test('a timeout whose timer is a multiple of it stops the service above the value whose timer Node.js still keeps', () => {
  // The pool's client-side bound is DB_QUERY_TIMEOUT + 500 ms; ioredis's backstop twenty times the command budget.
  refusedAt(loadApiConfig, 'DB_QUERY_TIMEOUT', String(MAX_TIMER_MS - 499), MAX_TIMER_MS - 500)
  assert.equal(load(loadApiConfig, { DB_QUERY_TIMEOUT: String(MAX_TIMER_MS - 500) }).DB_QUERY_TIMEOUT, MAX_TIMER_MS - 500)
  refusedAt(loadApiConfig, 'REDIS_COMMAND_TIMEOUT_MS', '107374183', 107374182)
})

test('an integer setting past Number.MAX_SAFE_INTEGER, read as some other number, stops the service at start', () => {
  refusedAt(loadDataServiceConfig, 'IMPORT_MAX_BYTES', '9007199254740992', Number.MAX_SAFE_INTEGER)
  refusedAt(loadApiConfig, 'CACHE_TTL', '9999999999999999999999999', Number.MAX_SAFE_INTEGER)
  refusedAt(loadOrchestratorConfig, 'EVENTS_MAX_BUFFERED_BYTES', '99999999999999999999', Number.MAX_SAFE_INTEGER)
  assert.equal(load(loadDataServiceConfig, { PRESSURE_MAX_HEAP_USED_BYTES: '8589934592' }).PRESSURE_MAX_HEAP_USED_BYTES, 8589934592, 'bytes are not durations')
})

test('every setting whose meaning is in ms is recognized as a duration (named *_MS or declared unit ms)', () => {
  const schemas: Record<string, ConfigSchema> = { api: apiConfigSchema, 'data-service': dataServiceConfigSchema, orchestrator: orchestratorConfigSchema }
  for (const [service, schema] of Object.entries(schemas)) {
    for (const [name, property] of Object.entries(schema.properties)) {
      if (property.type !== 'integer' || !/\bms\b/i.test(property.description)) continue
      assert.ok(name.endsWith('_MS') || property.unit === 'ms', `${service} ${name} is in ms: name it *_MS or declare unit: 'ms'`)
    }
  }
})
