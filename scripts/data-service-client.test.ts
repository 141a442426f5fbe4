import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import ts from 'typescript'
import { projectRoot } from '../services/platform/paths.js'
import { DATA_SERVICE_TYPES_FILE, dataServiceTypes, generateDocuments, type OpenApiDocument } from './lib/openapi.js'

const documents = await generateDocuments()

let previous: ts.Program | undefined

/** Type-checks the orchestrator (and what it imports) against the given data-service types, as `npm run build` would. */
function orchestratorErrors (types: string): string[] {
  const { config } = ts.readConfigFile(join(projectRoot, 'tsconfig.json'), (file) => ts.sys.readFile(file))
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, projectRoot)
  const host = ts.createCompilerHost({ ...options, noEmit: true })
  const readFile = host.readFile.bind(host)
  const typesFile = resolve(DATA_SERVICE_TYPES_FILE)
  host.readFile = (file) => (resolve(file) === typesFile ? types : readFile(file))
  // The previous program lends its unchanged files: only the types and what depends on them are checked again.
  const program = ts.createProgram([join(projectRoot, 'services', 'orchestrator', 'app.ts')], { ...options, noEmit: true }, host, previous)
  previous = program
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`)
}

type Lead200 = { properties: Record<string, unknown>, required: string[] }
function leadAnswer (document: OpenApiDocument, path: string): Lead200 {
  const get = document.paths[path]?.get as { responses: Record<string, { content: Record<string, { schema: Lead200 & { properties: { data?: { items: Lead200 } } } }> }> }
  const schema = get.responses['200']?.content['application/json']?.schema
  assert.ok(schema, `${path} documents no 200`)
  return schema.properties.data?.items ?? schema
}

test('the orchestrator type-checks against the data-service types generated from the committed document', async () => {
  assert.deepEqual(orchestratorErrors(await dataServiceTypes(documents['data-service'])), [])
})

test('a data-service response schema that drops a field the orchestrator reads fails the orchestrator\'s type check', async () => {
  const changed = structuredClone(documents['data-service'])
  for (const path of ['/data/v1/leads/{id}', '/data/v1/leads/unassigned']) {
    const lead = leadAnswer(changed, path)
    delete lead.properties.product
    lead.required = lead.required.filter((name) => name !== 'product')
  }
  const errors = orchestratorErrors(await dataServiceTypes(changed))
  assert.ok(errors.some((e) => e.includes('routing.ts') && e.includes('product')), errors.join('\n'))
})

test('a data-service path the orchestrator calls that is renamed fails the orchestrator\'s type check', async () => {
  const changed = structuredClone(documents['data-service'])
  const item = changed.paths['/data/v1/leads/{id}']
  assert.ok(item)
  delete changed.paths['/data/v1/leads/{id}']
  changed.paths['/data/v1/lead/{id}'] = item
  const errors = orchestratorErrors(await dataServiceTypes(changed))
  assert.ok(errors.some((e) => e.includes('data-service.ts') && e.includes('/data/v1/leads/{id}')), errors.join('\n'))
})
