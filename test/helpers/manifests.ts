import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import ts from 'typescript'
import { projectRoot } from '../../services/platform/paths.js'

export interface Manifest { file: string, apiVersion: string, kind: string, metadata: { name: string, namespace?: string, labels?: Record<string, string> }, [key: string]: unknown }

export const K8S_DIR = join(projectRoot, 'deploy', 'k8s')
export const OVERLAYS = ['dev', 'prod'] as const

/** `kubectl kustomize` of a folder under deploy/k8s (kubectl's built-in kustomize; no cluster is contacted). */
export function renderKustomization (dir: string): string {
  const r = spawnSync('kubectl', ['kustomize', join(K8S_DIR, dir)], { encoding: 'utf8' })
  if (r.error) throw new Error(`kubectl is not installed (bash .ci/run installs it): ${r.error.message}`)
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${r.stderr}`)
  return r.stdout
}

/** The objects an overlay renders to, each tagged with the overlay (`file`). */
export function loadManifests (overlay: typeof OVERLAYS[number] = 'prod'): Manifest[] {
  const file = `overlays/${overlay}`
  const out: Manifest[] = []
  for (const doc of parseAllDocuments(renderKustomization(file))) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value = doc.toJS() as Manifest | null
    if (value) out.push({ ...value, file })
  }
  return out
}

/** Where each kind's model and its TypeScript interface live. */
export const MODELS: Record<string, { module: string, type: string }> = {
  'v1/Namespace': { module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/Secret': { module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/Service': { module: 'kubernetes-models/v1/Service', type: 'IService' },
  'apps/v1/Deployment': { module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'policy/v1/PodDisruptionBudget': { module: 'kubernetes-models/policy/v1/PodDisruptionBudget', type: 'IPodDisruptionBudget' },
  'autoscaling/v2/HorizontalPodAutoscaler': { module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', type: 'IHorizontalPodAutoscaler' },
  'autoscaling.k8s.io/v1/VerticalPodAutoscaler': { module: '@kubernetes-models/autoscaler/autoscaling.k8s.io/v1/VerticalPodAutoscaler', type: 'IVerticalPodAutoscaler' },
  'monitoring.coreos.com/v1/ServiceMonitor': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', type: 'IServiceMonitor' },
  'monitoring.coreos.com/v1/PodMonitor': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor', type: 'IPodMonitor' },
  'monitoring.coreos.com/v1/PrometheusRule': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', type: 'IPrometheusRule' }
}

/**
 * Unknown fields, at any depth, through TypeScript's excess-property check: each manifest becomes an object
 * literal typed as its kind's interface from kubernetes-models (the schemas' validators let extra keys through).
 * Returns the compiler's messages, empty when every field is known.
 */
export function unknownFieldErrors (manifests: Manifest[]): string[] {
  const imports = new Set<string>()
  const lines: string[] = []
  manifests.forEach((m, i) => {
    const model = MODELS[`${m.apiVersion}/${m.kind}`]
    if (!model) throw new Error(`${m.file}: no model for ${m.apiVersion} ${m.kind}`)
    imports.add(`import type { ${model.type} } from '${model.module}'`)
    const { file: _file, ...doc } = m
    lines.push(`// ${m.file} ${m.kind} ${m.metadata.name}\nexport const m${i}: ${model.type} = ${JSON.stringify(doc, null, 2)}`)
  })
  const fileName = join(projectRoot, 'test', 'deploy', '__manifests__.ts')
  const source = `${[...imports].join('\n')}\n${lines.join('\n')}\n`
  const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true, types: [] }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, version, ...rest) => name === fileName ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === fileName || fileExists(name)
  const program = ts.createProgram([fileName], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? source.slice(0, d.start).split('\n').reverse().find((l) => l.startsWith('// ')) ?? '' : ''
    return `${where.slice(3)}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`
  })
}
