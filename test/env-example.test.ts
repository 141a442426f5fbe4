import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { apiConfigSchema } from '../services/api/config.js'
import { dataServiceConfigSchema } from '../services/data-service/config.js'
import { orchestratorConfigSchema } from '../services/orchestrator/config.js'
import { composeSchema } from '@lead-chassis/plugins/chassis'
import { scriptsConfigFragment } from '../scripts/lib/config.js'
import { cdnConfigFragment } from '@lead-chassis/plugins/cdn'

const schemas = { api: apiConfigSchema, 'data-service': dataServiceConfigSchema, orchestrator: orchestratorConfigSchema, scripts: composeSchema(scriptsConfigFragment), cdn: composeSchema(cdnConfigFragment) }

function documented (): Map<string, string> {
  const vars = new Map<string, string>()
  for (const line of readFileSync(join(projectRoot, '.env.example'), 'utf8').split('\n')) {
    const match = /^#?\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
    if (match?.[1]) vars.set(match[1], match[2] ?? '')
  }
  return vars
}

test('.env.example lists every variable of every schema', () => {
  const vars = documented()
  for (const [service, schema] of Object.entries(schemas)) {
    for (const name of Object.keys(schema.properties)) assert.ok(vars.has(name), `${name} (${service}) is missing from .env.example`)
  }
})

test('.env.example shows each default as the schema declares it', () => {
  const vars = documented()
  for (const schema of Object.values(schemas)) {
    for (const [name, property] of Object.entries(schema.properties)) {
      if (property.default === undefined || name === 'PORT') continue
      assert.equal(vars.get(name), String(property.default), `${name} default differs from .env.example`)
    }
  }
})

test('the configuration table of docs/configuration.md names every variable', () => {
  const readme = readFileSync(join(projectRoot, 'docs', 'configuration.md'), 'utf8')
  for (const schema of Object.values(schemas)) {
    for (const name of Object.keys(schema.properties)) assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), `${name} is missing from the docs/configuration.md table`)
  }
})

test('each service listens on a port of its own when PORT is unset, the ports docs/configuration.md gives, and .env.example leaves PORT unset', () => {
  const ports = Object.fromEntries((['api', 'data-service', 'orchestrator'] as const).map((name) => [name, (schemas[name].properties as { PORT?: { default?: number } }).PORT?.default]))
  assert.deepEqual(ports, { api: 3000, 'data-service': 3001, orchestrator: 3002 })
  const row = readFileSync(join(projectRoot, 'docs', 'configuration.md'), 'utf8').split('\n').find((line) => line.startsWith('| `PORT` |')) ?? ''
  for (const [name, port] of Object.entries(ports)) assert.match(row, new RegExp(`the ${name}'s (default is )?${port}`), `${name}: ${row}`)
  assert.ok(readFileSync(join(projectRoot, '.env.example'), 'utf8').split('\n').every((line) => !line.startsWith('PORT=')), 'a copy of .env.example would give every service one port')
})
