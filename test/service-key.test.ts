import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { createTestSchema, type TestSchema } from './helpers/database.js'
import { freePort } from './helpers/ports.js'

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
