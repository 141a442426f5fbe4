import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { apiConfigSchema } from '../services/api/config.js'
import { dataServiceConfigSchema } from '../services/data-service/config.js'
import { orchestratorConfigSchema } from '../services/orchestrator/config.js'
import { loadConfig } from '@lead-chassis/plugins/chassis'
import { TEST_SERVICE_KEY, createTestSchema, uniqueName, type TestSchema } from './helpers/database.js'
import { freePort } from './helpers/ports.js'
import { buildTestApi, startDataService, startOrchestrator } from './helpers/services.js'

/** A service's listening entry run with `env` only (cwd a temp folder, so no .env): its exit code and output. */
async function run (service: 'api' | 'data-service' | 'orchestrator', env: Record<string, string>): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'services', service, 'main.js')], { cwd: tmpdir(), env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const stuck = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(stuck)
  return { code, output }
}

async function baseEnv (t: { after: (fn: () => Promise<void>) => void }): Promise<Record<string, string>> {
  const db: TestSchema = await createTestSchema()
  t.after(() => db.drop())
  return { DATABASE_URL: db.url, DB_SCHEMA: db.schema, DB_POOL_MIN: '1', DB_POOL_MAX: '2', PORT: String(await freePort()), LOG_LEVEL: 'warn' }
}

test('an orchestrator without SERVICE_API_KEY is refused at start naming it, instead of answering every routing call 502 (data-service answered 401)', async (t) => {
  const env = await baseEnv(t)
  for (const value of [undefined, '']) {
    const { code, output } = await run('orchestrator', { ...env, ...(value === undefined ? {} : { SERVICE_API_KEY: value }) })
    assert.equal(code, 1, output)
    assert.match(output, /CHASSIS_CONFIG_INVALID/, output)
    assert.match(output, /SERVICE_API_KEY must be set/, output)
  }
})

// What docker-compose.yml and the Kubernetes base Secret shipped as SERVICE_API_KEY: anyone who read the repository knew it.
const SHIPPED_PLACEHOLDER = 'change-me-to-a-long-random-secret'

test('every service refuses at start a SERVICE_API_KEY that is the shipped placeholder or shorter than 32 characters, naming the variable and never echoing the value', async (t) => {
  const env = await baseEnv(t)
  for (const service of ['api', 'data-service', 'orchestrator'] as const) {
    for (const value of [SHIPPED_PLACEHOLDER, 'CHANGE-ME-to-something-else-but-still-the-placeholder', 'short-key-of-31-characters-long']) {
      const { code, output } = await run(service, { ...env, SERVICE_API_KEY: value })
      assert.equal(code, 1, `${service} with ${value}: ${output}`)
      assert.match(output, /CHASSIS_CONFIG_INVALID/, output)
      assert.match(output, /SERVICE_API_KEY must/, output)
      assert.ok(!output.includes(value), `${service} echoed the key: ${output}`)
    }
  }
})

const OLD_KEY = 'old-service-key-0123456789abcdefghijklmno'
const NEW_KEY = 'new-service-key-0123456789abcdefghijklmno'
// The rotation of docs/runbook.md: each phase is rolled out to every service before the next one starts.
const ROTATION: Array<Record<string, string>> = [
  { SERVICE_API_KEY: OLD_KEY },
  { SERVICE_API_KEY: OLD_KEY, SERVICE_API_KEY_PREVIOUS: NEW_KEY },
  { SERVICE_API_KEY: NEW_KEY, SERVICE_API_KEY_PREVIOUS: OLD_KEY },
  { SERVICE_API_KEY: NEW_KEY }
]

test('rotating SERVICE_API_KEY with SERVICE_API_KEY_PREVIOUS keeps routing at every step: an orchestrator of either adjacent phase routes through a data-service of either, instead of 502 (data-service answered 401) until the rollout ends', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('rotate')}:` }
  const dataServices = await Promise.all(ROTATION.map(async (phase) => (await startDataService(t, db, { ...prefix, ...phase })).url))
  const routeBatch = async (sender: Record<string, string>, receiverUrl: string): Promise<number> => {
    const { app } = await startOrchestrator(t, db, receiverUrl, { ...prefix, ...sender, DATA_SERVICE_RETRIES: '0' })
    const res = await app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: { 'x-service-key': sender.SERVICE_API_KEY as string }, payload: { limit: 1 } })
    return res.statusCode
  }
  for (let step = 1; step < ROTATION.length; step++) {
    for (const sender of [step - 1, step]) {
      for (const receiver of [step - 1, step]) {
        assert.equal(await routeBatch(ROTATION[sender] as Record<string, string>, dataServices[receiver] as string), 200, `step ${step}: orchestrator of phase ${sender}, data-service of phase ${receiver}`)
      }
    }
  }
  // Why each phase must be rolled out everywhere before the next: the first and the last have no key in common.
  assert.equal(await routeBatch(ROTATION[0] as Record<string, string>, dataServices[3] as string), 502)
})

test('a data-service with SERVICE_API_KEY and SERVICE_API_KEY_PREVIOUS takes either in x-service-key and refuses any other 401 INVALID_SERVICE_KEY', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const prefix = { CACHE_PREFIX: `${uniqueName('rotate')}:` }
  const data = await startDataService(t, db, { ...prefix, SERVICE_API_KEY: NEW_KEY, SERVICE_API_KEY_PREVIOUS: OLD_KEY })
  const get = (key: string) => fetch(`${data.url}/data/v1/leads/unassigned?limit=1`, { headers: { 'x-service-key': key } })
  assert.equal((await get(NEW_KEY)).status, 200)
  assert.equal((await get(OLD_KEY)).status, 200)
  for (const wrong of ['other-service-key-0123456789abcdefghijklm', `${OLD_KEY}x`, NEW_KEY.slice(0, -1)]) {
    const res = await get(wrong)
    assert.equal(res.status, 401)
    assert.equal((await res.json() as { code: string }).code, 'INVALID_SERVICE_KEY')
  }
})

test('a wrong or empty x-service-key on a route that needs no credentials (probes, /metrics, the quote page, openapi.json) is ignored as before, not refused 401, and is never the service identity', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildTestApi(db, { CACHE_PREFIX: `${uniqueName('probe')}:`, RATE_LIMIT_PREFIX: `${uniqueName('probe-rl')}:`, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: '2' })
  t.after(() => app.close())
  const stale = ['stale-service-key-0123456789abcdefghijklm', '']
  for (const url of ['/health/live', '/health/ready', '/metrics', '/quote/', '/api/v1/openapi.json']) {
    const bare = await app.inject(url)
    assert.equal(bare.statusCode, 200, `${url}: ${bare.body}`)
    for (const wrong of stale) {
      const res = await app.inject({ url, headers: { 'x-service-key': wrong } })
      assert.equal(res.statusCode, 200, `${url} with ${wrong === '' ? 'an empty' : 'a wrong'} service key: ${res.body}`)
    }
  }
  // The service identity is never rate limited; a wrong key is counted like no key at all (a 404 is rate limited).
  const limited = async (headers: Record<string, string>): Promise<number[]> => {
    const codes = []
    for (let i = 0; i < 4; i++) codes.push((await app.inject({ url: '/api/v1/no-such-route', headers, remoteAddress: '192.0.2.9' })).statusCode)
    return codes
  }
  assert.deepEqual(await limited({ 'x-service-key': TEST_SERVICE_KEY }), [404, 404, 404, 404])
  assert.deepEqual(await limited({ 'x-service-key': stale[0] as string }), [404, 404, 429, 429])
  // A route that authenticates still refuses it.
  for (const wrong of stale) {
    const res = await app.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-service-key': wrong }, remoteAddress: '192.0.2.10' })
    assert.equal(res.statusCode, 401)
    assert.equal(res.json().code, 'INVALID_SERVICE_KEY')
  }
})

test('a SERVICE_API_KEY or SERVICE_API_KEY_PREVIOUS ending in a line break (a file\'s newline, as kubectl create secret --from-file keeps it) is refused at start naming the line break, not the length or placeholder rule, and never echoed', () => {
  const key = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5'
  for (const [service, schema] of Object.entries({ api: apiConfigSchema, 'data-service': dataServiceConfigSchema, orchestrator: orchestratorConfigSchema })) {
    for (const name of ['SERVICE_API_KEY', 'SERVICE_API_KEY_PREVIOUS']) {
      for (const value of [`${key}\n`, `${key}\r\n`]) {
        const env = { DATABASE_URL: 'postgres://u@db:5432/leads', SERVICE_API_KEY: key, [name]: value }
        assert.throws(() => loadConfig(schema, { dotenv: false, env }), (err: Error) => {
          assert.equal((err as Error & { code?: string }).code, 'CHASSIS_CONFIG_INVALID')
          assert.match(err.message, new RegExp(`${name} ends with a line break \\(a file's newline\\?\\)`), `${service}: ${err.message}`)
          assert.doesNotMatch(err.message, new RegExp(`${name} must`), `${service}: only the line break is named: ${err.message}`)
          assert.ok(!err.message.includes(key), `${service} echoed the key`)
          return true
        })
      }
    }
    // The same key without the line break starts.
    assert.equal(loadConfig<{ SERVICE_API_KEY: string }>(schema, { dotenv: false, env: { DATABASE_URL: 'postgres://u@db:5432/leads', SERVICE_API_KEY: key } }).SERVICE_API_KEY, key)
  }
})

test('a SERVICE_API_KEY or SERVICE_API_KEY_PREVIOUS beginning or ending with a space or tab is refused at start naming it: a header drops them, so every call between the services would be refused 401', () => {
  const key = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5'
  for (const [service, schema] of Object.entries({ api: apiConfigSchema, 'data-service': dataServiceConfigSchema, orchestrator: orchestratorConfigSchema })) {
    for (const name of ['SERVICE_API_KEY', 'SERVICE_API_KEY_PREVIOUS']) {
      for (const value of [`${key} `, ` ${key}`, `${key}\t`]) {
        const env = { DATABASE_URL: 'postgres://u@db:5432/leads', SERVICE_API_KEY: key, [name]: value }
        assert.throws(() => loadConfig(schema, { dotenv: false, env }), (err: Error) => {
          assert.equal((err as Error & { code?: string }).code, 'CHASSIS_CONFIG_INVALID')
          assert.match(err.message, new RegExp(`${name} begins or ends with a space or tab`), `${service}: ${err.message}`)
          assert.ok(!err.message.includes(key), `${service} echoed the key`)
          return true
        })
      }
    }
  }
})
