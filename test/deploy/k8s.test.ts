import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { loadConfig } from '@lead-chassis/plugins/chassis'
import { apiConfigSchema } from '../../services/api/config.js'
import { dataServiceConfigSchema } from '../../services/data-service/config.js'
import { orchestratorConfigSchema } from '../../services/orchestrator/config.js'
import { MODELS, OVERLAYS, loadManifests, unknownFieldErrors, type Manifest } from '../helpers/manifests.js'
import { NGINX_DIR } from '../helpers/nginx.js'

// What `kubectl kustomize deploy/k8s/overlays/prod` renders; both overlays are validated below.
const manifests = loadManifests('prod')
const NS = 'insurance-lead-gen'
const SERVICES = { api: apiConfigSchema, 'data-service': dataServiceConfigSchema, orchestrator: orchestratorConfigSchema }

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML
const of = (kind: string): Obj[] => manifests.filter((m) => m.kind === kind) as Obj[]
const named = (kind: string, name: string): Obj | undefined => of(kind).find((m) => m.metadata.name === name)

test('every object of both overlays validates against the Kubernetes schemas (kubernetes-models, VPA and Prometheus Operator included)', async () => {
  assert.ok(manifests.length >= 30, `${manifests.length} objects`)
  for (const m of OVERLAYS.flatMap((o) => loadManifests(o))) {
    const model = MODELS[`${m.apiVersion}/${m.kind}`]
    assert.ok(model, `${m.file}: unexpected ${m.apiVersion} ${m.kind}`)
    const mod = await import(model.module) as Record<string, new (data: unknown) => { validate: () => void }>
    const Model = mod[m.kind]
    assert.ok(Model)
    const { file: _file, ...doc } = m
    assert.doesNotThrow(() => new Model(doc).validate(), `${m.file} ${m.kind} ${m.metadata.name}`)
    // prometheus-adapter's rules live beside the adapter.
    const ns = m.metadata.name === 'prometheus-adapter-rules' ? 'monitoring' : NS
    if (m.kind !== 'Namespace') assert.equal(m.metadata.namespace, ns, `${m.file} ${m.metadata.name} namespace`)
  }
})

test('no unknown field anywhere (TypeScript excess-property check against the models\' types)', () => {
  for (const overlay of OVERLAYS) assert.deepEqual(unknownFieldErrors(loadManifests(overlay)), [], overlay)
  // The check itself catches a typo, at depth.
  const broken = structuredClone(manifests.find((m) => m.kind === 'Deployment')) as Obj
  broken.spec.template.spec.containers[0].readinesProbe = broken.spec.template.spec.containers[0].readinessProbe
  assert.match(unknownFieldErrors([broken as Manifest]).join('\n'), /readinesProbe/)
})

test('enums the schemas leave as plain strings hold valid values', () => {
  for (const h of of('HorizontalPodAutoscaler')) {
    for (const dir of ['scaleUp', 'scaleDown']) {
      const rules = h.spec.behavior?.[dir]
      if (!rules) continue
      assert.ok(['Max', 'Min', 'Disabled'].includes(rules.selectPolicy ?? 'Max'), `${h.metadata.name} ${dir} selectPolicy`)
      for (const p of rules.policies ?? []) assert.ok(['Pods', 'Percent'].includes(p.type), `${h.metadata.name} policy type ${p.type}`)
    }
    for (const metric of h.spec.metrics) {
      assert.ok(['Resource', 'Pods', 'Object', 'External', 'ContainerResource'].includes(metric.type))
      const target = metric.resource?.target ?? metric.pods?.target
      assert.ok(['Utilization', 'AverageValue', 'Value'].includes(target.type))
    }
  }
  for (const v of of('VerticalPodAutoscaler')) {
    assert.ok(['Off', 'Initial', 'Recreate', 'Auto', 'InPlaceOrRecreate'].includes(v.spec.updatePolicy.updateMode))
    for (const c of v.spec.resourcePolicy.containerPolicies) assert.ok(['RequestsAndLimits', 'RequestsOnly'].includes(c.controlledValues))
  }
  for (const d of of('Deployment')) {
    for (const c of d.spec.template.spec.containers) {
      assert.ok(['Always', 'IfNotPresent', 'Never'].includes(c.imagePullPolicy))
      for (const p of c.ports) assert.ok(['TCP', 'UDP', 'SCTP'].includes(p.protocol))
    }
  }
  for (const s of of('Service')) assert.ok(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(s.spec.type))
})

test('each Deployment has a Service, an HPA, a VPA and a PDB; an HPA-managed Deployment sets no replicas', () => {
  const deployments = of('Deployment')
  assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ['api', 'data-service', 'nginx', 'orchestrator', 'otel-collector'])
  // The collector has a fixed count: traces are not what the platform scales on.
  assert.equal(named('Deployment', 'otel-collector')?.spec.replicas, 2)
  for (const d of deployments.filter((x) => x.metadata.name !== 'otel-collector')) {
    const name = d.metadata.name as string
    const labels = d.spec.template.metadata.labels as Record<string, string>
    const selects = (selector: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v)
    assert.ok(selects(d.spec.selector.matchLabels), `${name}: selector matches its pods`)
    assert.ok(of('Service').some((s) => selects(s.spec.selector)), `${name}: a Service`)
    assert.ok(of('PodDisruptionBudget').some((p) => selects(p.spec.selector.matchLabels)), `${name}: a PDB`)
    const hpa = of('HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === name)
    assert.ok(hpa, `${name}: an HPA`)
    assert.ok(of('VerticalPodAutoscaler').some((v) => v.spec.targetRef.kind === 'Deployment' && v.spec.targetRef.name === name), `${name}: a VPA`)
    assert.equal(d.spec.replicas, undefined, `${name}: replicas belong to the HPA`)
  }
})

test('the HPAs carry the platform\'s scaling numbers; the VPAs its ranges and only recommend', () => {
  const expected = { api: [2, 10], 'data-service': [2, 8], orchestrator: [2, 6] } as const
  for (const [name, [min, max]] of Object.entries(expected)) {
    const h = of('HorizontalPodAutoscaler').find((x) => x.spec.scaleTargetRef.name === name) as Obj
    assert.deepEqual([h.spec.minReplicas, h.spec.maxReplicas], [min, max], name)
    const cpu = h.spec.metrics.find((m: Obj) => m.resource?.name === 'cpu').resource.target.averageUtilization
    assert.ok(cpu >= 70 && cpu <= 75, `${name} cpu ${cpu}`)
    assert.equal(h.spec.metrics.find((m: Obj) => m.resource?.name === 'memory').resource.target.averageUtilization, 80)
    assert.ok(h.spec.metrics.some((m: Obj) => m.type === 'Pods' && m.pods.metric.name === 'http_requests_per_second'), `${name} request rate`)
    const up = h.spec.behavior.scaleUp
    assert.deepEqual(up.policies, [{ type: 'Percent', value: 100, periodSeconds: 30 }, { type: 'Pods', value: 4, periodSeconds: 30 }])
    assert.equal(up.selectPolicy, 'Min', 'the smaller of +100% and +4 pods: at most 4 pods per step')
    const down = h.spec.behavior.scaleDown
    assert.deepEqual(down.policies, [{ type: 'Percent', value: 50, periodSeconds: 60 }])
    assert.equal(down.stabilizationWindowSeconds, 300)
  }
  const ranges = { api: ['100m', '2000m', '128Mi', '2Gi'], 'data-service': ['100m', '2000m', '128Mi', '2Gi'], orchestrator: ['200m', '4000m', '256Mi', '4Gi'] }
  for (const [name, [cmin, cmax, mmin, mmax]] of Object.entries(ranges)) {
    const v = of('VerticalPodAutoscaler').find((x) => x.spec.targetRef.name === name) as Obj
    const policy = v.spec.resourcePolicy.containerPolicies[0]
    assert.deepEqual([policy.minAllowed.cpu, policy.maxAllowed.cpu, policy.minAllowed.memory, policy.maxAllowed.memory], [cmin, cmax, mmin, mmax], name)
    // The HPA scales on CPU and memory: a VPA acting on them would fight it, so it only recommends.
    assert.equal(v.spec.updatePolicy.updateMode, 'Off', `${name}: VPA recommends only`)
  }
  const adapter = parse(named('ConfigMap', 'prometheus-adapter-rules')?.data['config.yaml']) as Obj
  assert.deepEqual(adapter.rules.map((r: Obj) => r.name.as), ['http_requests_per_second'])
})

test('ports, probes and the NGINX upstreams agree; shutdown fits the grace period; pods run as non-root', () => {
  const config = named('ConfigMap', 'platform-config') as Obj
  for (const d of of('Deployment')) {
    const pod = d.spec.template.spec
    const [container] = pod.containers
    const ports = new Map<string, number>(container.ports.map((p: Obj) => [p.name, p.containerPort]))
    const services = of('Service').filter((s) => Object.entries(s.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v))
    for (const s of services) for (const p of s.spec.ports) assert.ok(ports.has(p.targetPort), `${s.metadata.name} targets a named container port`)
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const get = container[probe]?.httpGet
      assert.ok(get, `${d.metadata.name} ${probe}`)
      assert.ok(ports.has(get.port), `${d.metadata.name} ${probe} port`)
      const expectedPath = { nginx: '/health', 'otel-collector': '/' }[d.metadata.name as string] ?? (probe === 'readinessProbe' ? '/health/ready' : '/health/live')
      assert.equal(get.path, expectedPath, `${d.metadata.name} ${probe} path`)
    }
    assert.equal(pod.securityContext.runAsNonRoot, true)
    assert.equal(container.securityContext.allowPrivilegeEscalation, false)
    assert.ok(container.resources.requests.cpu && container.resources.limits.memory, `${d.metadata.name} resources`)
    assert.ok(pod.topologySpreadConstraints.length > 0)
    // SHUTDOWN_TIMEOUT_MS bounds the whole shutdown from SIGTERM, SHUTDOWN_DELAY_MS included (the config refuses a delay as long).
    assert.ok(Number(config.data.SHUTDOWN_DELAY_MS) < Number(config.data.SHUTDOWN_TIMEOUT_MS), 'the services refuse a SHUTDOWN_DELAY_MS not below SHUTDOWN_TIMEOUT_MS')
    const preStopMs = ((container.lifecycle?.preStop.sleep.seconds ?? 0) as number) * 1000
    const budget = ['nginx', 'otel-collector'].includes(d.metadata.name) ? preStopMs : preStopMs + Number(config.data.SHUTDOWN_TIMEOUT_MS)
    assert.ok(budget < pod.terminationGracePeriodSeconds * 1000, `${d.metadata.name}: ${budget} ms of shutdown within the grace period`)
  }
  // NGINX's upstream servers are the headless Services' names and ports (k8s-operations.test.ts checks the rest).
  const conf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
  const upstreams = [...conf.matchAll(/^\s*server ([a-z-]+)\$\{NGINX_UPSTREAM_DOMAIN\}:(\d+) /gm)].map((m) => [m[1] ?? '', Number(m[2])] as const)
  assert.equal(upstreams.length, 3)
  for (const [host, port] of upstreams) {
    const service = named('Service', host)
    assert.ok(service, `an upstream names the Service ${host}`)
    assert.ok(service.spec.ports.some((p: Obj) => p.port === port), `${host}:${port}`)
  }
  const nginx = named('Deployment', 'nginx') as Obj
  const publicPort = Number(/listen (\d+) default_server/.exec(conf)?.[1])
  assert.equal(nginx.spec.template.spec.containers[0].ports.find((p: Obj) => p.name === 'http').containerPort, publicPort)
  assert.ok(!(named('Service', 'nginx') as Obj).spec.ports.some((p: Obj) => p.port === 8080), 'the status port is not public')
})

test('the base Secret\'s SERVICE_API_KEY is a placeholder every service refuses at start: a base applied unchanged does not run with a key every reader knows', () => {
  const placeholder = (named('Secret', 'platform-secrets') as Obj).stringData.SERVICE_API_KEY as string
  for (const [service, schema] of Object.entries(SERVICES)) {
    assert.throws(() => loadConfig(schema, { dotenv: false, env: { DATABASE_URL: 'postgres://u@db:5432/leads', SERVICE_API_KEY: placeholder } }), /CHASSIS_CONFIG_INVALID.*SERVICE_API_KEY must/, service)
  }
})

test('every variable the services read is set in the ConfigMap, the Secret or the Deployment', () => {
  const config = named('ConfigMap', 'platform-config') as Obj
  const secret = named('Secret', 'platform-secrets') as Obj
  for (const [service, schema] of Object.entries(SERVICES)) {
    const d = named('Deployment', service) as Obj
    const container = d.spec.template.spec.containers[0]
    assert.deepEqual(container.envFrom.map((e: Obj) => e.configMapRef?.name ?? e.secretRef?.name), ['platform-config', 'platform-secrets'])
    const set = new Set([...Object.keys(config.data), ...Object.keys(secret.stringData), ...container.env.map((e: Obj) => e.name)])
    for (const name of Object.keys(schema.properties)) assert.ok(set.has(name), `${service}: ${name} is not set`)
    assert.equal(container.env.find((e: Obj) => e.name === 'PORT').value, String(container.ports[0].containerPort))
  }
  for (const secretName of ['DATABASE_URL', 'REDIS_URL', 'SERVICE_API_KEY', 'SERVICE_API_KEY_PREVIOUS']) assert.equal(config.data[secretName], undefined, `${secretName} only in the Secret`)
})
