import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import { DATA_SERVICE_TYPES_FILE, OPENAPI_DIR, dataServiceTypes, documentText, generateDocuments, type OpenApiDocument } from './lib/openapi.js'

const documents = await generateDocuments()

test('each service\'s generated OpenAPI document is a valid OpenAPI 3.1 document', async () => {
  for (const [name, document] of Object.entries(documents)) {
    const result = await new Validator().validate(structuredClone(document) as never)
    assert.equal(result.valid, true, `${name}: ${JSON.stringify(result.errors, null, 2)}`)
    assert.equal(document.openapi, '3.1.0')
  }
})

test('an invalid document is refused by the validator the documents are checked with', async () => {
  const broken = structuredClone(documents.api) as OpenApiDocument
  const first = Object.values(broken.paths)[0] as Record<string, { responses: Record<string, { description?: string }> }>
  // A response without its description: what a hand-edited document easily gets wrong.
  for (const operation of Object.values(first)) for (const response of Object.values(operation.responses)) delete response.description
  assert.equal((await new Validator().validate(broken as never)).valid, false)
})

test('the committed docs/openapi documents equal the generated ones (run npm run openapi after changing a route schema)', () => {
  for (const [name, document] of Object.entries(documents)) {
    const committed = readFileSync(join(OPENAPI_DIR, `${name}.json`), 'utf8')
    assert.equal(committed, documentText(document), `docs/openapi/${name}.json is stale: run npm run openapi`)
  }
})

test('the orchestrator\'s committed data-service types equal those generated from the data-service\'s document', async () => {
  assert.equal(readFileSync(DATA_SERVICE_TYPES_FILE, 'utf8'), await dataServiceTypes(documents['data-service']),
    'services/orchestrator/data-service-api.ts is stale: run npm run openapi')
})

test('every route declares who may call it and answers the platform\'s error body with its codes', () => {
  for (const [name, document] of Object.entries(documents)) {
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item as Record<string, { security?: unknown[], responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }>, 'x-error-codes'?: string[] }> }>)) {
        const where = `${name} ${method.toUpperCase()} ${path}`
        assert.ok(Array.isArray(operation.security), `${where} has no security requirement`)
        for (const [status, response] of Object.entries(operation.responses)) {
          if (Number(status) < 400) continue
          assert.ok(Array.isArray(response['x-error-codes']), `${where} ${status} lists no error codes`)
        }
        assert.ok(operation.responses['500'], `${where} does not document 500`)
      }
    }
  }
  const list = documents.api.paths['/api/v1/leads']?.get as { security: unknown[], responses: Record<string, { headers?: Record<string, unknown>, 'x-error-codes'?: string[], content?: unknown }> }
  assert.deepEqual(list.security, [{ apiKey: ['leads:read'] }, { serviceKey: [] }])
  assert.deepEqual(list.responses['429']?.['x-error-codes'], ['RATE_LIMITED', 'API_KEY_LOOKUPS_EXCEEDED'])
  assert.ok(list.responses['429']?.headers?.['Retry-After'])
  assert.ok(list.responses['200']?.headers?.['X-RateLimit-Remaining'])
  assert.deepEqual(list.responses['401']?.content, { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } })
  const create = documents.api.paths['/api/v1/leads']?.post as { security: unknown[] }
  assert.deepEqual(create.security, [{ apiKey: ['leads:create'] }, { serviceKey: [] }, {}], 'the capture form posts without a key')
})
