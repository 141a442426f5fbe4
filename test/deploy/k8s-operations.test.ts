import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { migrationsDir, projectRoot } from '../../services/platform/paths.js'
import { createTestSchema, uniqueName } from '../helpers/database.js'
import { loadManifests } from '../helpers/manifests.js'
import { NGINX_DIR } from '../helpers/nginx.js'
import { PROMETHEUS_DIR, loadRuleGroups } from '../helpers/prometheus.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML

const prod = loadManifests('prod') as Obj[]
const dev = loadManifests('dev') as Obj[]
const of = (kind: string, list = prod): Obj[] => list.filter((m) => m.kind === kind)
const named = (kind: string, name: string, list = prod): Obj | undefined => of(kind, list).find((m) => m.metadata.name === name)
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v)
const SERVICES = ['api', 'data-service', 'orchestrator']

test('NGINX balances per pod: each upstream is a headless Service of its Deployment\'s pods, re-resolved (zone, resolve, resolver)', () => {
  const conf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
  const all = [...conf.matchAll(/upstream (\w+) \{\n([\s\S]*?)\n {2}\}/g)]
  // The key gate is NGINX's own loopback server, not a service.
  const gate = all.find(([, name]) => name === 'edge_key_gate')
  assert.match(gate?.[2] ?? '', /^\s*server 127\.0\.0\.1:\d+;$/m)
  const upstreams = all.filter((u) => u !== gate)
  assert.equal(upstreams.length, 3)
  for (const [, name, body = ''] of upstreams) {
    assert.match(body, new RegExp(`^\\s*zone ${name} \\d+k;`, 'm'), `${name}: a shared zone (resolve needs one)`)
    const server = /^\s*server ([a-z-]+)\$\{NGINX_UPSTREAM_DOMAIN\}:(\d+) resolve max_fails=\d+ fail_timeout=\d+s;$/m.exec(body)
    assert.ok(server, `${name}: one server, resolved per pod, with passive health checks`)
    const [, host = '', port] = server
    const service = named('Service', host)
    assert.ok(service, host)
    assert.equal(service.spec.clusterIP, 'None', `${host} is headless: its name resolves to each ready pod`)
    const deployment = of('Deployment').find((d) => selects(service.spec.selector, d.spec.template.metadata.labels))
    assert.ok(deployment && SERVICES.includes(deployment.metadata.name), `${host} selects a service's pods`)
    const servicePort = service.spec.ports.find((p: Obj) => p.port === Number(port))
    assert.ok(servicePort, `${host}:${port}`)
    // A headless Service does no port mapping: the pod must listen on the very port NGINX dials.
    assert.equal(deployment.spec.template.spec.containers[0].ports.find((p: Obj) => p.name === servicePort.targetPort)?.containerPort, Number(port))
  }
  assert.match(conf, /^\s*resolver \$\{NGINX_RESOLVER\} valid=\d+s/m)
  // The cluster supplies every template variable, the domain from the pod's own namespace.
  const nginx = named('Deployment', 'nginx') as Obj
  const envs = new Map<string, Obj>(nginx.spec.template.spec.containers[0].env.map((e: Obj) => [e.name, e]))
  const used = new Set([...conf.matchAll(/\$\{(NGINX_\w+)\}/g)].map((m) => m[1]))
  assert.deepEqual([...used].sort(), ['NGINX_RESOLVER', 'NGINX_UPSTREAM_DOMAIN', 'NGINX_WORKER_CONNECTIONS', 'NGINX_WORKER_PROCESSES'])
  for (const name of used) assert.ok(envs.has(name ?? ''), `${name} set on the NGINX container`)
  assert.equal(envs.get('NGINX_UPSTREAM_DOMAIN')?.value, '.$(POD_NAMESPACE).svc.cluster.local')
  assert.equal(envs.get('POD_NAMESPACE')?.valueFrom.fieldRef.fieldPath, 'metadata.namespace')
  assert.equal(envs.get('NGINX_WORKER_PROCESSES')?.valueFrom.resourceFieldRef.resource, 'limits.cpu', 'one worker per CPU of the limit')
  // The image renders the templates and its NGINX knows `resolve` in an upstream (1.27.3 and later).
  const dockerfile = readFileSync(join(NGINX_DIR, 'Dockerfile'), 'utf8')
  const [major = 0, minor = 0] = (/^FROM nginxinc\/nginx-unprivileged:(\d+)\.(\d+)/m.exec(dockerfile) ?? []).slice(1).map(Number)
  assert.ok(major > 1 || minor >= 28, `NGINX ${major}.${minor}`)
  for (const name of used) assert.match(dockerfile, new RegExp(`${name}=`), `${name} has a default in the image`)
  assert.match(dockerfile, /NGINX_ENVSUBST_FILTER=\^NGINX_/)
  assert.match(dockerfile, /COPY deploy\/nginx\/nginx.conf \/etc\/nginx\/templates\/nginx.conf.template/)
  const cmd = JSON.parse(/^CMD (.*)$/m.exec(dockerfile)?.[1] ?? '[]') as string[]
  assert.equal(cmd[cmd.indexOf('-c') + 1], `${/NGINX_ENVSUBST_OUTPUT_DIR=(\S+)/.exec(dockerfile)?.[1]}/nginx.conf`, 'NGINX reads the rendered file')
})

test('every pod of a service migrates before it starts: the migrate init container runs the image\'s migration with the service\'s environment', () => {
  for (const name of SERVICES) {
    const pod = named('Deployment', name)?.spec.template.spec
    const [init] = pod.initContainers
    const [container] = pod.containers
    assert.equal(init.name, 'migrate')
    assert.deepEqual(init.command, ['node', 'dist/scripts/migrate.js'])
    assert.equal(init.image, container.image, `${name}: the migration of the version that starts`)
    assert.deepEqual(init.envFrom, container.envFrom)
    assert.equal(init.securityContext.readOnlyRootFilesystem, true)
  }
})

test('the migrate init container\'s command is idempotent and safe when pods start together', { timeout: 60000 }, async (t) => {
  // The test schema only lends its connection; the migration gets a schema of its own that does not exist yet.
  const db = await createTestSchema()
  const schema = uniqueName('migrate')
  t.after(async () => { await db.sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`); await db.drop() })
  const [, script] = named('Deployment', 'api')?.spec.template.spec.initContainers[0].command as string[]
  const run = async (): Promise<{ code: number, out: string }> => {
    const child = spawn(process.execPath, [join(projectRoot, script ?? '')], { cwd: projectRoot, env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: schema }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    const [code] = await once(child, 'exit') as [number]
    return { code, out }
  }
  // Three pods of a new version start at once on an empty schema, then one restarts.
  const together = await Promise.all([run(), run(), run()])
  for (const r of together) assert.equal(r.code, 0, r.out)
  assert.equal(together.filter((r) => /applied /.test(r.out)).length, 1, together.map((r) => r.out).join('\n'))
  const again = await run()
  assert.equal(again.code, 0, again.out)
  assert.match(again.out, /schema is up to date/)
  const [row] = await db.sql<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.pgmigrations`)
  assert.equal(Number(row?.n), readdirSync(migrationsDir).length, 'each migration applied once')
})

test('scraping: the ServiceMonitor selects the three services\' Services (not the headless ones) and keeps their `service` label; the PodMonitor and annotations name real ports', () => {
  const [monitor] = of('ServiceMonitor')
  const scraped = of('Service').filter((s) => selects(monitor?.spec.selector.matchLabels, s.metadata.labels))
  assert.deepEqual(scraped.map((s) => s.metadata.name).sort(), SERVICES, 'each pod scraped once')
  const [endpoint] = monitor?.spec.endpoints ?? []
  assert.equal(endpoint.honorLabels, true)
  for (const s of scraped) assert.ok(s.spec.ports.some((p: Obj) => p.name === endpoint.port), `${s.metadata.name} has port ${endpoint.port}`)
  const [podMonitor] = of('PodMonitor')
  const nginx = named('Deployment', 'nginx') as Obj
  assert.ok(selects(podMonitor?.spec.selector.matchLabels, nginx.spec.template.metadata.labels))
  const nginxPorts = nginx.spec.template.spec.containers.flatMap((c: Obj) => c.ports)
  assert.ok(nginxPorts.some((p: Obj) => p.name === podMonitor?.spec.podMetricsEndpoints[0].port), 'the exporter\'s port')
  const exporter = nginx.spec.template.spec.containers.find((c: Obj) => c.name === 'exporter')
  const statusPort = nginxPorts.find((p: Obj) => p.name === 'status').containerPort
  assert.ok(exporter.args.includes(`--nginx.scrape-uri=http://127.0.0.1:${statusPort}/nginx_status`))
  for (const d of of('Deployment').filter((x) => x.metadata.name !== 'otel-collector')) {
    const a = d.spec.template.metadata.annotations
    assert.equal(a['prometheus.io/scrape'], 'true', d.metadata.name)
    assert.ok(d.spec.template.spec.containers.some((c: Obj) => c.ports.some((p: Obj) => p.containerPort === Number(a['prometheus.io/port']))), `${d.metadata.name}: the annotated port is a container port`)
  }
})

test('the PrometheusRule holds exactly the groups of deploy/prometheus/rules.yml; the HPAs\' metric is the adapter\'s name for a recorded series', () => {
  const [rule] = of('PrometheusRule')
  assert.deepEqual(rule?.spec.groups, loadRuleGroups())
  const adapter = parse(named('ConfigMap', 'prometheus-adapter-rules')?.data['config.yaml']) as Obj
  const [entry] = adapter.rules
  const series = /^([a-zA-Z0-9_:]+)\{/.exec(entry.seriesQuery)?.[1]
  assert.ok(loadRuleGroups().some((g) => g.rules.some((r) => r.record === series)), `${series} is recorded`)
  assert.equal(entry.name.matches, `^${series}$`)
  for (const h of of('HorizontalPodAutoscaler').filter((x) => x.metadata.name !== 'nginx-hpa')) {
    assert.ok(h.spec.metrics.some((m: Obj) => m.pods?.metric.name === entry.name.as), h.metadata.name)
  }
  assert.deepEqual(Object.keys(entry.resources.overrides).sort(), ['namespace', 'pod'])
  const scrape = parse(readFileSync(join(PROMETHEUS_DIR, 'kubernetes.yml'), 'utf8')) as Obj
  assert.deepEqual(scrape.rule_files, ['rules.yml'])
  const labelled = scrape.scrape_configs[0].relabel_configs.map((r: Obj) => r.target_label)
  for (const label of ['namespace', 'pod']) assert.ok(labelled.includes(label), `plain scraping labels ${label}`)
})

test('the OpenTelemetry Collector: its configuration is deploy/otel/collector.yaml, its Service serves the receivers, the services export to it', () => {
  const config = named('ConfigMap', 'otel-collector-config')?.data['config.yaml'] as string
  assert.deepEqual(parse(config), parse(readFileSync(join(projectRoot, 'deploy', 'otel', 'collector.yaml'), 'utf8')))
  const collector = parse(config) as Obj
  const deployment = named('Deployment', 'otel-collector') as Obj
  const container = deployment.spec.template.spec.containers[0]
  assert.ok(deployment.spec.template.spec.volumes.some((v: Obj) => v.configMap?.name === 'otel-collector-config'))
  const mount = container.volumeMounts[0].mountPath
  assert.ok(container.args.includes(`--config=${mount}/config.yaml`))
  const ports = new Map<number, string>(container.ports.map((p: Obj) => [p.containerPort, p.name]))
  for (const protocol of ['grpc', 'http']) {
    const port = Number(collector.receivers.otlp.protocols[protocol].endpoint.split(':')[1])
    const service = named('Service', 'otel-collector') as Obj
    assert.ok(service.spec.ports.some((p: Obj) => p.port === port && p.targetPort === ports.get(port)), `OTLP ${protocol} on ${port}`)
  }
  assert.equal(ports.get(Number(collector.extensions.health_check.endpoint.split(':')[1])), container.readinessProbe.httpGet.port)
  assert.ok(container.env.some((e: Obj) => e.name === 'OTLP_TRACES_ENDPOINT'), 'the exporter\'s endpoint is set')
  const endpoint = new URL(named('ConfigMap', 'platform-config')?.data.OTEL_EXPORTER_OTLP_ENDPOINT)
  assert.equal(endpoint.hostname, 'otel-collector')
  assert.equal(Number(endpoint.port), 4318)
})

test('the dev overlay renders the same objects with one pod per service, every trace sampled and the dev images', () => {
  const ids = (list: Obj[]): string[] => list.map((m) => `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`).sort()
  assert.deepEqual(ids(dev), ids(prod))
  for (const h of of('HorizontalPodAutoscaler', dev)) assert.equal(h.spec.minReplicas, 1, h.metadata.name)
  assert.equal(named('ConfigMap', 'platform-config', dev)?.data.OTEL_TRACES_SAMPLER_ARG, '1')
  for (const d of of('Deployment', dev)) {
    for (const c of [...d.spec.template.spec.containers, ...(d.spec.template.spec.initContainers ?? [])]) {
      if (c.image.startsWith('ghcr.io/insurance-lead-gen/')) assert.match(c.image, /:dev$/, `${d.metadata.name}/${c.name}`)
    }
  }
  for (const d of of('Deployment')) {
    for (const c of d.spec.template.spec.containers) if (c.image.startsWith('ghcr.io/insurance-lead-gen/')) assert.match(c.image, /:\d+\.\d+\.\d+$/, 'prod pins a release')
  }
})
