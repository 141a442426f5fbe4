import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema } from '../../test/helpers/database.js'
import { startOtlpReceiver, startTracedService, waitForSpans } from '../../test/helpers/otlp.js'

// The helper turns the other signals off; undefined leaves a variable out of the child's environment, as the
// Kubernetes config leaves them out.
const unset = undefined as unknown as string

async function startApi (t: Parameters<typeof startTracedService>[0], otlpUrl: string, env: Record<string, string>) {
  const db = await createTestSchema()
  t.after(() => db.drop())
  return await startTracedService(t, 'api', 'dist/services/api/main.js', otlpUrl, {
    DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, CACHE_ENABLED: 'false',
    LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', OTEL_METRICS_EXPORTER: unset, OTEL_LOGS_EXPORTER: unset,
    // Were metrics or log records exported, they would be within the test's wait.
    OTEL_METRIC_EXPORT_INTERVAL: '200', OTEL_BLRP_SCHEDULE_DELAY: '100',
    ...env
  })
}

test('an OTLP endpoint alone exports traces only: every log line is not also sent as an OTLP log record, nor are metrics sent', { timeout: 60000 }, async (t) => {
  const otlp = await startOtlpReceiver(t)
  const api = await startApi(t, otlp.url, {})
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })).status, 200, api.stderr())
  await waitForSpans(otlp.received, (spans) => spans.some((s) => s.span.name === 'GET /api/v1/leads'))
  await sleep(1000)
  assert.ok(otlp.received.length > 0, 'traces are exported')
  assert.deepEqual([...new Set(otlp.exports.map((e) => e.path))], ['/v1/traces'])
  // The log lines keep their trace context, so a line still leads to its trace.
  const completed = api.stdout().split('\n').filter((line) => line.includes('"request completed"'))
  assert.ok(completed.length >= 3 && completed.every((line) => /"trace_id":"[0-9a-f]{32}"/.test(line)), api.stdout())
})

test('OTEL_LOGS_EXPORTER=otlp still sends the log lines as OTLP log records', { timeout: 60000 }, async (t) => {
  const otlp = await startOtlpReceiver(t)
  const api = await startApi(t, otlp.url, { OTEL_LOGS_EXPORTER: 'otlp' })
  assert.equal((await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })).status, 200, api.stderr())
  const logs = (): string => otlp.exports.filter((e) => e.path === '/v1/logs').map((e) => e.body.toString()).join('')
  for (let i = 0; i < 100 && !logs().includes('request completed'); i++) await sleep(100)
  assert.match(logs(), /request completed/)
})

test('OTEL_METRICS_EXPORTER=otlp still pushes metrics over OTLP', { timeout: 60000 }, async (t) => {
  const otlp = await startOtlpReceiver(t)
  const api = await startApi(t, otlp.url, { OTEL_METRICS_EXPORTER: 'otlp' })
  assert.equal((await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })).status, 200, api.stderr())
  const pushed = (): boolean => otlp.exports.some((e) => e.path === '/v1/metrics')
  for (let i = 0; i < 100 && !pushed(); i++) await sleep(100)
  assert.ok(pushed(), 'metrics arrive at /v1/metrics')
})

// What the preload leaves in place in a process: a subscriber that adds the server span's hooks to every Fastify
// instance, and the ioredis instrumentation's wrapper around every Redis command.
const PROBE = `const dc = await import('node:diagnostics_channel')
const { default: Redis } = await import('ioredis')
console.log(JSON.stringify({ fastifyHooks: dc.hasSubscribers('fastify.initialization'), redisWrapped: Redis.prototype.sendCommand.__wrapped === true }))`

async function instrumentedWith (env: Record<string, string>): Promise<{ fastifyHooks: boolean, redisWrapped: boolean }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), '--input-type=module', '-e', PROBE], {
    // The project's root (dist/plugins/telemetry/..), where the probe's imports resolve.
    cwd: fileURLToPath(new URL('../../../', import.meta.url)), env: { PATH: process.env.PATH ?? '', ...env }
  })
  return JSON.parse(stdout) as { fastifyHooks: boolean, redisWrapped: boolean }
}

test('OTEL_SDK_DISABLED=true starts no instrumentation even with an endpoint set: no hooks on Fastify, no Redis wrapper, nothing exported', { timeout: 60000 }, async (t) => {
  const otlp = await startOtlpReceiver(t)
  // The probe sees what an endpoint alone puts in place.
  assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }), { fastifyHooks: true, redisWrapped: true })
  // Read as the SDK reads a boolean: any case, spaces around it.
  for (const value of ['true', ' TRUE ']) {
    assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SDK_DISABLED: value }), { fastifyHooks: false, redisWrapped: false }, `OTEL_SDK_DISABLED=${JSON.stringify(value)}`)
  }
  assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SDK_DISABLED: 'false' }), { fastifyHooks: true, redisWrapped: true })

  const api = await startApi(t, otlp.url, { OTEL_SDK_DISABLED: 'true' })
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${api.url}/api/v1/leads?limit=1`, { headers: SERVICE_HEADERS })).status, 200, api.stderr())
  // The batch processor's delay is 100 ms here: an export would have arrived.
  await sleep(1000)
  assert.deepEqual(otlp.exports, [])
  const completed = api.stdout().split('\n').filter((line) => line.includes('"request completed"'))
  assert.ok(completed.length >= 3 && completed.every((line) => !line.includes('trace_id')), api.stdout())
})

test('OTEL_TRACES_EXPORTER=none with an endpoint set starts no instrumentation, as the SDK then exports no trace; another signal asked for still starts it', { timeout: 60000 }, async () => {
  const endpoint = 'http://127.0.0.1:4318'
  const off = { fastifyHooks: false, redisWrapped: false }
  const on = { fastifyHooks: true, redisWrapped: true }
  // Read as the SDK reads the list: a first `none` (even before another name) or no name it knows means no exporter.
  for (const value of ['none', ' none ', 'none,otlp', 'NONE', 'jaeger']) {
    assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_EXPORTER: value }), off, `OTEL_TRACES_EXPORTER=${JSON.stringify(value)}`)
    assert.deepEqual(await instrumentedWith({ OTEL_TRACES_EXPORTER: value }), off, `OTEL_TRACES_EXPORTER=${JSON.stringify(value)} alone`)
  }
  for (const value of ['otlp', ' otlp ', 'otlp,none', '']) {
    assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_EXPORTER: value }), on, `OTEL_TRACES_EXPORTER=${JSON.stringify(value)}`)
  }
  assert.deepEqual(await instrumentedWith({ OTEL_TRACES_EXPORTER: 'console' }), on)
  // Metrics or log records over OTLP still want the SDK.
  assert.deepEqual(await instrumentedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'otlp' }), on)
})

test('an OTLP endpoint of only spaces is no endpoint: nothing starts, as with none set, instead of every instrumentation exporting to the SDK\'s default localhost:4318', { timeout: 60000 }, async () => {
  for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    assert.deepEqual(await instrumentedWith({ [name]: '  ' }), { fastifyHooks: false, redisWrapped: false }, name)
    assert.deepEqual(await instrumentedWith({ [name]: ' http://127.0.0.1:4318 ' }), { fastifyHooks: true, redisWrapped: true }, name)
  }
})

test('an OTEL_SDK_DISABLED, OTEL_FASTIFY_DETAIL or OTEL_PG_INSTRUMENTATION value read as false (1, yes) is named in a warning at start, not ignored without a word', { timeout: 60000 }, async () => {
  const run = async (env: Record<string, string>): Promise<{ stdout: string, stderr: string }> => await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), '--input-type=module', '-e', PROBE], {
    cwd: fileURLToPath(new URL('../../../', import.meta.url)), env: { PATH: process.env.PATH ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', ...env }
  })
  const disabledAsOne = await run({ OTEL_SDK_DISABLED: '1' })
  assert.deepEqual(JSON.parse(disabledAsOne.stdout), { fastifyHooks: true, redisWrapped: true }, 'read as the SDK reads it: false')
  assert.match(disabledAsOne.stderr, /LEAD_CHASSIS_OTEL_SETTING_IGNORED.*OTEL_SDK_DISABLED="1" is neither true nor false/)
  for (const name of ['OTEL_FASTIFY_DETAIL', 'OTEL_PG_INSTRUMENTATION']) assert.match((await run({ [name]: 'yes' })).stderr, new RegExp(`${name}="yes" is neither true nor false`))
  // A value the SDK would take (any case, spaces around it) is taken, without a warning.
  for (const value of ['false', ' TRUE ']) assert.doesNotMatch((await run({ OTEL_SDK_DISABLED: value, OTEL_FASTIFY_DETAIL: value, OTEL_PG_INSTRUMENTATION: value })).stderr, /LEAD_CHASSIS_OTEL_SETTING_IGNORED/)
  assert.equal((await run({})).stderr, '')
})

test('an OTLP endpoint without its scheme (collector:4318) is named in a warning at start: no trace would reach it, without a word', { timeout: 60000 }, async () => {
  const stderr = async (env: Record<string, string>): Promise<string> => (await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), '--input-type=module', '-e', PROBE], {
    cwd: fileURLToPath(new URL('../../../', import.meta.url)), env: { PATH: process.env.PATH ?? '', ...env }
  })).stderr
  assert.match(await stderr({ OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4318' }), /LEAD_CHASSIS_OTEL_SETTING_IGNORED.*OTEL_EXPORTER_OTLP_ENDPOINT="127.0.0.1:4318" is not an http:\/\/ or https:\/\/ URL/)
  assert.match(await stderr({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318/v1/traces' }), /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="collector:4318\/v1\/traces" is not/)
  const quiet: Array<Record<string, string>> = [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'HTTPS://collector:4318' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318', OTEL_TRACES_EXPORTER: 'console' }]
  for (const env of quiet) {
    assert.doesNotMatch(await stderr(env), /LEAD_CHASSIS_OTEL_SETTING_IGNORED/, JSON.stringify(env))
  }
})

test('a sampler the SDK does not know (traceidratio with a space) or a ratio out of 0..1 (10 meant as 10%) is named in a warning at start: the SDK would sample every trace without a word', { timeout: 60000 }, async () => {
  const stderr = async (env: Record<string, string>): Promise<string> => (await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), '--input-type=module', '-e', PROBE], {
    cwd: fileURLToPath(new URL('../../../', import.meta.url)), env: { PATH: process.env.PATH ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', ...env }
  })).stderr
  assert.match(await stderr({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio ', OTEL_TRACES_SAMPLER_ARG: '0.1' }), /LEAD_CHASSIS_OTEL_SETTING_IGNORED.*OTEL_TRACES_SAMPLER="parentbased_traceidratio " is not a sampler the SDK knows/)
  for (const arg of ['10', 'ten', '-0.5']) {
    assert.match(await stderr({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: arg }), new RegExp(`OTEL_TRACES_SAMPLER_ARG="${arg}" is not a ratio from 0 to 1`))
  }
  assert.match(await stderr({ OTEL_TRACES_SAMPLER: 'traceidratio' }), /OTEL_TRACES_SAMPLER_ARG="" is not a ratio/)
  const quiet: Array<Record<string, string>> = [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }, { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: ' 1 ' }, { OTEL_TRACES_SAMPLER: 'always_off' }, { OTEL_TRACES_SAMPLER: '' }]
  for (const env of quiet) assert.doesNotMatch(await stderr(env), /LEAD_CHASSIS_OTEL_SETTING_IGNORED/, JSON.stringify(env))
})
