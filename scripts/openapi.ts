import { mkdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { DATA_SERVICE_TYPES_FILE, OPENAPI_DIR, dataServiceTypes, documentText, generateDocuments } from './lib/openapi.js'

// `npm run openapi`: writes each service's OpenAPI document to docs/openapi/ and the orchestrator's types of the
// data-service's contract. scripts/openapi.test.ts fails when the committed files differ from what this writes.
const documents = await generateDocuments()
mkdirSync(OPENAPI_DIR, { recursive: true })
for (const [name, document] of Object.entries(documents)) {
  const file = join(OPENAPI_DIR, `${name}.json`)
  writeFileSync(file, documentText(document))
  console.log(`wrote ${relative(projectRoot, file)}`)
}
writeFileSync(DATA_SERVICE_TYPES_FILE, await dataServiceTypes(documents['data-service']))
console.log(`wrote ${relative(projectRoot, DATA_SERVICE_TYPES_FILE)}`)
