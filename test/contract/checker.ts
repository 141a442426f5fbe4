import assert from 'node:assert/strict'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import type { FastifyInstance, InjectOptions } from 'fastify'
import type { OpenApiDocument } from '../../scripts/lib/openapi.js'

type Response = Awaited<ReturnType<FastifyInstance['inject']>>
interface DocumentedResponse {
  content?: Record<string, { schema?: unknown }>
  headers?: Record<string, unknown>
  'x-error-codes'?: string[]
}
interface Operation {
  parameters?: Array<{ in: string }>
  requestBody?: unknown
  security?: Array<Record<string, string[]>>
  responses: Record<string, DocumentedResponse>
}

let invented = 0
/** A well-formed key no instance has issued: each one is looked up, and charged to the caller's lookup budget. */
export function inventedKey (): string {
  invented++
  return `lck_${`inv${invented}`.padEnd(12, 'x')}_${'c'.repeat(43)}`
}

/**
 * Checks real answers against a service's OpenAPI document: the status must be documented for the operation, the
 * body must match the documented schema of that status, an error's code must be one the document lists, and a 429
 * must carry the documented Retry-After. It remembers what it saw, so a test can fail when a route was not driven.
 */
export class ContractChecker {
  readonly #document: OpenApiDocument
  readonly #ajv: Ajv2020
  readonly #validators = new Map<string, ValidateFunction>()
  readonly #operations: Array<{ method: string, path: string, pattern: RegExp, operation: Operation }> = []
  readonly seen = new Map<string, Set<number>>()

  constructor (document: OpenApiDocument) {
    this.#document = document
    this.#ajv = new Ajv2020({ strict: false, allErrors: true })
    addFormats.default(this.#ajv)
    this.#ajv.addSchema(document.components as object, 'components')
    for (const [path, item] of Object.entries(document.paths)) {
      const pattern = new RegExp(`^${path.replace(/[.+?^$()[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`)
      for (const [method, operation] of Object.entries(item as Record<string, Operation>)) this.#operations.push({ method: method.toUpperCase(), path, pattern, operation })
      this.seen.set(path, this.seen.get(path) ?? new Set())
    }
  }

  /** Injects the request and checks the answer against the document; returns the answer for the test's own asserts. */
  async inject (app: FastifyInstance, options: InjectOptions & { url: string }): Promise<Response> {
    const res = await app.inject(options)
    this.check(options.method ?? 'GET', options.url, res)
    return res
  }

  check (method: string, url: string, res: Response): void {
    const path = url.split('?')[0] ?? url
    // A concrete path wins over a template (/leads/unassigned over /leads/{id}).
    const candidates = this.#operations.filter((o) => o.method === method.toUpperCase() && o.pattern.test(path))
    const found = candidates.find((o) => !o.path.includes('{')) ?? candidates[0]
    assert.ok(found, `${method} ${path} is not in the document`)
    const where = `${method} ${found.path} -> ${res.statusCode}`
    const documented = found.operation.responses[String(res.statusCode)]
    assert.ok(documented, `${where}: status not documented (documented: ${Object.keys(found.operation.responses).join(', ')}); body ${res.body.slice(0, 300)}`)
    const key = `${method.toUpperCase()} ${found.path}`
    const statuses = this.seen.get(key) ?? new Set()
    statuses.add(res.statusCode)
    this.seen.set(key, statuses)
    const json = documented.content?.['application/json']
    if (json?.schema !== undefined) {
      assert.match(String(res.headers['content-type']), /application\/json/, `${where}: documented as JSON`)
      const validate = this.#validator(`${key} ${res.statusCode}`, json.schema)
      const body: unknown = res.json()
      assert.ok(validate(body), `${where}: body does not match the document: ${this.#ajv.errorsText(validate.errors)}; body ${res.body.slice(0, 300)}`)
    }
    const codes = documented['x-error-codes']
    if (res.statusCode >= 400 && json !== undefined) {
      assert.ok(codes, `${where}: no error codes documented`)
      const code = (res.json() as { code: string }).code
      assert.ok(codes.includes(code), `${where}: code ${code} is not among the documented ${codes.join(', ')}`)
    }
    for (const header of Object.keys(documented.headers ?? {})) {
      // Rate-limit headers are sent only when a limiter counted the request (not for the platform's own calls).
      if (header === 'Retry-After' || (res.statusCode === 429)) assert.ok(res.headers[header.toLowerCase()] !== undefined, `${where}: documented header ${header} missing`)
    }
  }

  /**
   * Drives the key lookups' 429 on each route given, through an app whose lookup budget (API_KEY_LOOKUP_LIMIT) is
   * one: the first invented key spends it, and every route then refuses the next one before any lookup.
   */
  async refuseLookups (app: FastifyInstance, routes: Array<readonly [string, string]>, headerName = 'x-api-key'): Promise<void> {
    await app.inject({ url: '/health/live', headers: { [headerName]: inventedKey() } })
    for (const [method, url] of routes) {
      const res = await this.inject(app, { method: method as 'GET', url, headers: { [headerName]: inventedKey() } })
      assert.equal(res.statusCode, 429, `${method} ${url}`)
      assert.equal(res.json<{ code: string }>().code, 'API_KEY_LOOKUPS_EXCEEDED', `${method} ${url}`)
    }
  }

  /** An answer seen outside inject (a WebSocket upgrade): its status must be documented all the same. */
  record (method: string, path: string, status: number): void {
    const found = this.#operations.find((o) => o.method === method && o.path === path)
    assert.ok(found?.operation.responses[String(status)], `${method} ${path} -> ${status}: status not documented`)
    this.seen.set(`${method} ${path}`, new Set([...(this.seen.get(`${method} ${path}`) ?? []), status]))
  }

  #validator (key: string, schema: unknown): ValidateFunction {
    let validate = this.#validators.get(key)
    if (!validate) {
      // Component references point into the document's components, registered under the id "components".
      const rewritten = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"components#/')) as object
      validate = this.#ajv.compile(rewritten)
      this.#validators.set(key, validate)
    }
    return validate
  }

  /**
   * What was not driven: each operation needs a success, and the client errors the platform answers for it: 400 when
   * it takes parameters or a body, 401 and 403 when it needs a scope, 429 when it is rate limited.
   */
  uncovered (): string[] {
    const missing: string[] = []
    for (const { method, path, operation } of this.#operations) {
      const seen = this.seen.get(`${method} ${path}`) ?? new Set()
      const documented = Object.keys(operation.responses).map(Number)
      const expected = documented.filter((s) => s < 400).slice(0, 1)
      if ((operation.parameters?.length ?? 0) > 0 || operation.requestBody) expected.push(400)
      if ((operation.security?.length ?? 0) > 0) expected.push(401, 403)
      if (operation.responses['429']) expected.push(429)
      const success = [...seen].some((s) => s < 400)
      for (const status of expected) {
        if (status < 400 ? !success : !seen.has(status)) missing.push(`${method} ${path} ${status < 400 ? 'success' : status}`)
      }
    }
    return missing
  }

  get document (): OpenApiDocument {
    return this.#document
  }
}
