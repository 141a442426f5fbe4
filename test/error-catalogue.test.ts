import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { basename, join, relative } from 'node:path'
import { ApiKeyErrors } from '@lead-chassis/plugins/api-keys'
import { CacheErrors } from '@lead-chassis/plugins/cache'
import { CdnErrors } from '@lead-chassis/plugins/cdn'
import { ChassisErrors } from '@lead-chassis/plugins/chassis'
import { PoolErrors } from '@lead-chassis/plugins/db-pool'
import { HttpClientErrors } from '@lead-chassis/plugins/http-client'
import { RateLimitErrors } from '@lead-chassis/plugins/rate-limit'
import { RedisErrors } from '@lead-chassis/plugins/redis'
import { TelemetryErrors } from '@lead-chassis/plugins/telemetry'
import { DataServiceErrors } from '../services/data-service/errors.js'
import { LeadErrors } from '../services/domain/errors.js'
import { OrchestratorErrors } from '../services/orchestrator/errors.js'
import { projectRoot } from '../services/platform/paths.js'
import { sourceFiles } from './helpers/sources.js'

/** Where an error is constructed from a code: only a package's errors.ts may do it. */
const CONSTRUCTS_ERROR = [/\bnew HttpError\s*\(/, /\bcreateError\s*(?:<[^>]*>)?\(/]
/**
 * An error body written by hand instead of thrown to the chassis's error handler: a send whose argument spells
 * `statusCode`, or a call of errorBody outside the chassis's own error answers.
 */
const WRITES_ERROR_BODY = [/\.send\([^)]*\bstatusCode\b/, /\berrorBody\s*\(/]
/** The chassis's error body, its error handler, router refusals and client-error answers, which write every error body. */
const BODY_WRITERS = new Set(['plugins/chassis/error-body.ts', 'plugins/chassis/error-handler.ts', 'plugins/chassis/refused-url.ts', 'plugins/chassis/client-error.ts'])

function offences (file: string, text: string): string[] {
  const found: string[] = []
  if (basename(file) !== 'errors.ts') {
    for (const pattern of CONSTRUCTS_ERROR) if (pattern.test(text)) found.push(`${file}: constructs an error from a code (${pattern.source})`)
  }
  if (!BODY_WRITERS.has(file)) {
    for (const pattern of WRITES_ERROR_BODY) if (pattern.test(text)) found.push(`${file}: writes an error body by hand (${pattern.source})`)
  }
  return found
}

test('the check finds an inline HttpError, an inline createError and error bodies written by hand', () => {
  assert.equal(offences('services/x/routes/a.ts', "throw new HttpError(404, 'LEAD_NOT_FOUND', `Lead ${id} not found`)").length, 1)
  assert.equal(offences('plugins/x/plugin.ts', "const E = createError<'X', 400, []>('X', 'x', 400)").length, 1)
  assert.equal(offences('services/x/routes/b.ts', 'return reply.code(400).type(\'application/json\').send(JSON.stringify({\n  statusCode, code, error, message\n}))').length, 1)
  assert.equal(offences('services/x/routes/c.ts', 'return reply.code(403).send(errorBody(403, error.code, error.message))').length, 1)
  assert.deepEqual(offences('plugins/x/errors.ts', "export const XErrors = { X: createError<'X', 400, []>('X', 'x', 400) }"), [])
})

test('no source outside an errors.ts constructs a coded error, and none writes an error body by hand', () => {
  const found: string[] = []
  for (const room of ['plugins', 'services']) {
    for (const path of sourceFiles(join(projectRoot, room))) {
      const file = relative(projectRoot, path).split('\\').join('/')
      found.push(...offences(file, readFileSync(path, 'utf8')))
    }
  }
  assert.deepEqual(found, [])
})

const CATALOGUES = {
  ApiKeyErrors, CacheErrors, CdnErrors, ChassisErrors, PoolErrors, HttpClientErrors, RateLimitErrors, RedisErrors, TelemetryErrors,
  LeadErrors, DataServiceErrors, OrchestratorErrors
}

test('each catalogue keys every error by its own code, and a code is declared once across them', () => {
  const declaredIn = new Map<string, string>()
  for (const [name, catalogue] of Object.entries(CATALOGUES)) {
    for (const [key, ErrorClass] of Object.entries(catalogue)) {
      const error = new (ErrorClass as new () => Error & { code: string, statusCode?: number })()
      assert.equal(error.code, key, `${name}.${key}`)
      assert.ok(error.statusCode === undefined || (error.statusCode >= 400 && error.statusCode < 600), `${name}.${key}: status ${error.statusCode}`)
      assert.equal(declaredIn.get(key), undefined, `${key} declared in ${declaredIn.get(key)} and ${name}`)
      declaredIn.set(key, name)
    }
  }
})
