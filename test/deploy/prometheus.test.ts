import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parse, stringify } from 'yaml'
import { buildApp } from '../../services/api/app.js'
import { SERVICE_HEADERS, createTestSchema, testApiConfig, uniqueName } from '../helpers/database.js'
import { loadManifests } from '../helpers/manifests.js'
import { freePort } from '../helpers/ports.js'
import { PROMETHEUS_DIR, RULES_FILE, loadRuleGroups, metricNames } from '../helpers/prometheus.js'
import { startDataService, startOrchestrator } from '../helpers/services.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML and JSON
const NS = 'insurance-lead-gen'
const HPA_RULE = 'namespace_pod:http_requests:rate2m'

interface Sample { metric: Record<string, string>, value: [number, string] }

async function query (base: string, promql: string, time?: number): Promise<Sample[]> {
  const url = `${base}/api/v1/query?query=${encodeURIComponent(promql)}${time === undefined ? '' : `&time=${time}`}`
  const body = await (await fetch(url)).json() as { status: string, data: { result: Sample[] }, error?: string }
  assert.equal(body.status, 'success', body.error)
  return body.data.result
}

test('a real Prometheus with the shipped scrape relabeling and rules scrapes the three services and computes the HPA\'s request rate per pod', { timeout: 90000 }, async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('prom')}:`, RATE_LIMIT_PREFIX: `${uniqueName('prom-rl')}:`, RATE_LIMIT_ENABLED: 'true' }
  const api = await buildApp(testApiConfig(db, env))
  t.after(() => api.close())
  const apiUrl = await api.listen({ host: '127.0.0.1', port: 0 })
  const data = await startDataService(t, db, env)
  const orchestrator = await startOrchestrator(t, db, data.url, env, true)
  const urls: Record<string, string> = { api: apiUrl, 'data-service': data.url, orchestrator: orchestrator.url }

  // Pods as Kubernetes discovery describes them, with each Deployment's own scrape annotations (only the port is
  // where the service listens here); Debian's Prometheus is built without Kubernetes discovery, so file discovery
  // hands the same meta labels to the shipped relabeling. One pod without the annotation must not be scraped.
  const deployments = loadManifests('prod').filter((m) => m.kind === 'Deployment') as Obj[]
  const pods: Record<string, string> = {}
  const targets = Object.entries(urls).map(([service, url]) => {
    const annotations = deployments.find((d) => d.metadata.name === service)?.spec.template.metadata.annotations as Record<string, string>
    assert.equal(annotations['prometheus.io/scrape'], 'true', service)
    pods[service] = `${service}-6c9d8f7b5-${service.length}x2kq`
    return {
      targets: [`${new URL(url).hostname}:1`],
      labels: {
        __meta_kubernetes_namespace: NS,
        __meta_kubernetes_pod_name: pods[service],
        __meta_kubernetes_pod_annotation_prometheus_io_scrape: annotations['prometheus.io/scrape'],
        __meta_kubernetes_pod_annotation_prometheus_io_path: annotations['prometheus.io/path'],
        __meta_kubernetes_pod_annotation_prometheus_io_port: new URL(url).port
      }
    }
  })
  targets.push({ targets: [`127.0.0.1:${new URL(apiUrl).port}`], labels: { __meta_kubernetes_namespace: NS, __meta_kubernetes_pod_name: 'unannotated', __meta_kubernetes_pod_annotation_prometheus_io_scrape: '', __meta_kubernetes_pod_annotation_prometheus_io_path: '', __meta_kubernetes_pod_annotation_prometheus_io_port: '' } })

  const dir = mkdtempSync(join(tmpdir(), 'prometheus-'))
  const config = parse(readFileSync(join(PROMETHEUS_DIR, 'kubernetes.yml'), 'utf8')) as Obj
  config.global = { scrape_interval: '1s', evaluation_interval: '1s' }
  config.rule_files = [RULES_FILE]
  for (const job of config.scrape_configs) {
    delete job.kubernetes_sd_configs
    job.file_sd_configs = [{ files: [join(dir, 'targets.json')], refresh_interval: '1s' }]
  }
  writeFileSync(join(dir, 'targets.json'), JSON.stringify(targets))
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config))
  const port = await freePort()
  const prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  prometheus.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  prometheus.on('error', (err) => { stderr += `prometheus could not start (bash .ci/run installs the prometheus package): ${err.message}` })
  t.after(async () => {
    if (prometheus.exitCode === null && prometheus.signalCode === null) {
      prometheus.kill('SIGTERM')
      await once(prometheus, 'exit')
    }
    rmSync(dir, { recursive: true, force: true })
  })
  const base = `http://127.0.0.1:${port}`

  // Traffic while Prometheus scrapes: reads with the service key, and callers without a key (counted by the limiter).
  let traffic = true
  const send = async (url: string, headers: Record<string, string> = {}): Promise<number> => fetch(url, { headers }).then(async (r) => { await r.arrayBuffer(); return r.status })
  const load = (async () => {
    while (traffic) {
      await Promise.all([
        send(`${apiUrl}/api/v1/leads?limit=1`, SERVICE_HEADERS),
        send(`${apiUrl}/api/v1/leads?limit=1`),
        send(`${data.url}/data/v1/leads/unassigned?limit=1`, SERVICE_HEADERS),
        send(`${orchestrator.url}/orchestrator/v1/leads/00000000-0000-4000-8000-000000000000/score`, SERVICE_HEADERS)
      ])
      await sleep(20)
    }
  })()
  const stopTraffic = async (): Promise<void> => { traffic = false; await load }
  t.after(() => stopTraffic().catch(() => {}))

  let rates: Sample[] = []
  const deadline = Date.now() + 30000
  while (Date.now() < deadline) {
    assert.ok(prometheus.exitCode === null && prometheus.pid !== undefined, `prometheus is not running: ${stderr}`)
    rates = await query(base, HPA_RULE).catch(() => [])
    if (rates.length === 3 && rates.every((s) => Number(s.value[1]) > 0)) break
    await sleep(250)
  }
  assert.deepEqual(rates.map((s) => s.metric).sort((a, b) => String(a.pod).localeCompare(String(b.pod))),
    Object.values(pods).sort().map((pod) => ({ __name__: HPA_RULE, namespace: NS, pod })), `recording rule series: ${JSON.stringify(rates)}\n${stderr}`)
  for (const s of rates) assert.ok(Number(s.value[1]) > 0, `${s.metric.pod}: ${s.value[1]} requests/s`)

  // prometheus-adapter's query, as it renders it for the HPA of one Deployment's pods, reads the same numbers.
  const adapter = parse((loadManifests('prod').find((m) => m.metadata.name === 'prometheus-adapter-rules') as Obj).data['config.yaml']) as Obj
  const rule = adapter.rules[0]
  const at = rates[0]?.value[0] ?? 0
  const rendered = String(rule.metricsQuery)
    .replace('<<.Series>>', HPA_RULE)
    .replace('<<.LabelMatchers>>', `namespace="${NS}",pod=~"${Object.values(pods).join('|')}"`)
    .replace('<<.GroupBy>>', 'pod')
  const served = await query(base, rendered, at)
  const recorded = await query(base, HPA_RULE, at)
  assert.equal(served.length, 3)
  for (const s of served) assert.equal(s.value[1], recorded.find((r) => r.metric.pod === s.metric.pod)?.value[1], `${s.metric.pod}: the adapter serves the recorded rate`)

  // Only annotated pods are scraped; every series the rules read exists (the replica lag only where replicas are configured).
  assert.deepEqual((await query(base, 'up')).map((s) => s.metric.pod).sort(), Object.values(pods).sort())
  const read = [...new Set(loadRuleGroups().flatMap((g) => g.rules).flatMap((r) => metricNames(r.expr)))]
    .filter((n) => !n.includes(':') && n !== 'db_replica_lag_seconds')
  const present = new Set((await query(base, `count by (__name__) ({__name__=~"${read.join('|')}"})`)).map((s) => s.metric.__name__))
  assert.deepEqual(read.filter((n) => !present.has(n)), [], 'metrics the rules read that no service exports')
  await stopTraffic()
})
