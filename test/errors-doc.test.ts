import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { sourceFiles } from './helpers/sources.js'

// The codes are read from the sources rather than imported: the pool's DatabaseError codes and the chassis's
// answers for Fastify's own errors are not createError catalogues, and a code only a string carries must be
// documented all the same.
const PATTERNS = [
  /createError(?:<[^>]*>)?\(\s*'([A-Z][A-Z0-9_]+)'/g,
  /(?:HttpError|super|errorBody)\(\s*\d{3},\s*'([A-Z][A-Z0-9_]+)'/g,
  // The OpenAPI documents' answers, load shedding's (@fastify/under-pressure's FST_UNDER_PRESSURE) among them.
  /\badd\(\s*\d{3},\s*'([A-Z][A-Z0-9_]+)'/g,
  /new DatabaseError\(\s*'([A-Z][A-Z0-9_]+)'/g,
  /\bcode:\s*'([A-Z][A-Z0-9_]+)'/g,
  /FST_ERR_[A-Z_]+:\s*'([A-Z][A-Z0-9_]+)'/g,
  /^\s*\|\s*'([A-Z][A-Z0-9_]+)'/gm
]
/** On a line that computes a code, every quoted code is one it may take. */
const COMPUTED = /\bcode\s*=(?!=).*$/gm

/** Codes only NGINX answers with (its JSON error pages live in deploy/nginx, not in TypeScript). */
const EDGE_ONLY = new Set(readFileSync(join(projectRoot, 'deploy/nginx/nginx.conf'), 'utf8').match(/(?<="code":")[A-Z][A-Z0-9_]+/g) ?? [])

function codesInSources (): Map<string, string> {
  const codes = new Map<string, string>()
  for (const room of ['plugins', 'services']) {
    for (const file of sourceFiles(join(projectRoot, room))) {
      const text = readFileSync(file, 'utf8')
      for (const pattern of PATTERNS) {
        for (const match of text.matchAll(pattern)) {
          const code = match[1]
          if (code && !code.startsWith('FST_ERR_') && !codes.has(code)) codes.set(code, relative(projectRoot, file))
        }
      }
      for (const line of text.match(COMPUTED) ?? []) {
        for (const match of line.matchAll(/'([A-Z][A-Z0-9_]{2,})'/g)) {
          if (match[1] && !codes.has(match[1])) codes.set(match[1], relative(projectRoot, file))
        }
      }
    }
  }
  return codes
}

function documentedCodes (): Map<string, string> {
  const rows = new Map<string, string>()
  for (const line of readFileSync(join(projectRoot, 'docs/errors.md'), 'utf8').split('\n')) {
    const match = /^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|/.exec(line)
    if (match?.[1] && match[2]) rows.set(match[1], match[2].trim())
  }
  return rows
}

test('docs/errors.md lists every error code the plugins, the services and the edge raise', () => {
  const documented = documentedCodes()
  const raised = [...codesInSources(), ...[...EDGE_ONLY].map((code) => [code, 'deploy/nginx/nginx.conf'] as const)]
  const missing = raised.filter(([code]) => !documented.has(code)).map(([code, file]) => `${code} (${file})`)
  assert.deepEqual(missing, [], `codes missing from docs/errors.md: ${missing.join(', ')}`)
})

test('docs/errors.md gives each code an HTTP status or says it is not an HTTP answer', () => {
  for (const [code, status] of documentedCodes()) assert.match(status, /^(\d{3}(, \d{3})*|not an HTTP answer)$/, `${code}: status column "${status}"`)
})

test('docs/errors.md lists no code that nothing raises', () => {
  const raised = codesInSources()
  const stale = [...documentedCodes().keys()].filter((code) => !raised.has(code) && !EDGE_ONLY.has(code))
  assert.deepEqual(stale, [], `documented but never raised: ${stale.join(', ')}`)
})
