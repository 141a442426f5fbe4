import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import type { SchemaErrorDataVar } from 'fastify/types/schema.js'
import { errorBody } from './error-body.js'
import { ChassisErrors } from './errors.js'
import { refusalOf } from './refused-url.js'
import { REDACTED } from './redact.js'
import { isDeclaredName } from './request-url.js'
import { SECURITY_HEADERS } from './security-headers.js'

const DETAILS = Symbol('error body details')

/**
 * Gives a catalogued error more fields for its JSON body (after the four every body has), e.g. how far an import
 * got. They are kept off the error's enumerable properties, so a logged error does not carry them.
 */
export function withBodyDetails<E extends Error> (error: E, details: Record<string, unknown>): E {
  Object.defineProperty(error, DETAILS, { value: details, enumerable: false })
  return error
}

// Ajv's instancePath holds the keys it went through, and a key a map-like schema lets through (`additionalProperties:
// {...}`, `patternProperties`) is the caller's: shown when some route declares it, as an array index (at most six
// digits, as a number in a logged URL), else `[REDACTED]`.
const ARRAY_INDEX = /^[0-9]{1,6}$/

function shownPath (instancePath: string): string {
  if (instancePath === '') return instancePath
  return instancePath.split('/').map((key, i) => i === 0 || ARRAY_INDEX.test(key) || isDeclaredName(key) ? key : REDACTED).join('/')
}

/**
 * Names the offending field, including the one ajv only reports in its params, and never the submitted value
 * (ajv's messages name the rule, e.g. `must match format "email"`; enums list the allowed values): the message is
 * logged and recorded on the request's span, and the value may be a lead's name, email or phone. So may a property
 * the schema does not allow be (`{"AnnLee": 1}`): it is named only when some route declares a property of that name
 * (request-url.ts `noteRoute`), a word a developer wrote, and so is a key on the path to the offending value; a
 * `required` error names the schema's own property.
 */
export function formatSchemaErrors (errors: FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): Error {
  const parts = errors.map((e) => {
    const path = `${dataVar}${shownPath(e.instancePath)}`
    const params = e.params as Record<string, unknown>
    if (e.keyword === 'additionalProperties') {
      const name = String(params.additionalProperty)
      return isDeclaredName(name) ? `${path}/${name} is not allowed` : `${path} has a property that is not allowed`
    }
    if (e.keyword === 'required') return `${path}/${String(params.missingProperty)} is required`
    if (e.keyword === 'enum') return `${path} must be one of ${(params.allowedValues as unknown[]).join(', ')}`
    return `${path} ${e.message ?? 'is invalid'}`
  })
  return new Error(parts.join('; '))
}

interface CodedError extends FastifyError {
  headers?: Record<string, string>
  retryAfterSeconds?: number
  [DETAILS]?: Record<string, unknown>
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_VALIDATION: 'VALIDATION_ERROR',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON'
}

// Other libraries' errors carry a status and no code (http-errors, as @fastify/send's for a static file whose
// If-Match fails or whose Range lies past its end): where the platform has a code for the status, the answer names
// what happened instead of the catch-all BAD_REQUEST. Made once: only their code and message are read.
const NAMED_STATUSES: ReadonlyMap<number, { code: string, message: string }> = new Map<number, { code: string, message: string }>([
  [412, new ChassisErrors.PRECONDITION_FAILED()],
  [416, new ChassisErrors.RANGE_NOT_SATISFIABLE()]
])

/**
 * Fastify's `frameworkErrors`, for what the router fails on before any route or hook runs and that is not routed
 * again (see refused-url.ts): an async constraint's failure. It answers the platform's body with every response's
 * headers, and without the URL (its query string may carry a key).
 */
export function routerErrorHandler (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  request.log.error({ err }, 'request failed')
  void reply.headers({ ...SECURITY_HEADERS, 'cache-control': 'no-store' }).header('x-request-id', request.id)
    .code(500).type('application/json; charset=utf-8').send(errorBody(500, 'INTERNAL_ERROR', 'Internal Server Error'))
}

/**
 * The status, code and message the platform answers for an error: what the error handler sends, and what a route
 * that reports an error inside a 2xx answer (a batch's item) tells its caller. An error that is not deliberate (a
 * TypeError, a driver's error) is a 500 whose text is not told.
 */
export function errorAnswer (error: unknown): { statusCode: number, code: string, message: string } {
  const err = (typeof error === 'object' && error !== null ? error : {}) as Partial<CodedError>
  const fromError = err.validation ? 400 : (err.statusCode ?? 500)
  const statusCode = fromError >= 400 && fromError < 600 ? fromError : 500
  // Fastify's own codes (FST_ERR_*) name its internals and are documented nowhere: those not mapped to one of ours
  // (FST_ERR_ROUTE_MISSING_CONTENT_TYPE for a QUERY without a content type) answer BAD_REQUEST or INTERNAL_ERROR.
  const deliberate = typeof err.code === 'string' && typeof err.statusCode === 'number' && !err.code.startsWith('FST_ERR_')
  // SyntaxError from the JSON parser carries statusCode 400 but its own code.
  const mapped = typeof err.code === 'string' ? FASTIFY_CODES[err.code] : undefined
  const named = deliberate || mapped !== undefined ? undefined : NAMED_STATUSES.get(statusCode)
  const code = mapped ?? (deliberate ? err.code as string : named?.code ?? (statusCode >= 500 ? 'INTERNAL_ERROR' : 'BAD_REQUEST'))
  const message = named?.message ?? (statusCode < 500 || deliberate ? String(err.message ?? '') : 'Internal Server Error')
  return { statusCode, code, message }
}

export function installErrorHandling (app: FastifyInstance): void {
  app.setErrorHandler((err: CodedError, request: FastifyRequest, reply: FastifyReply) => {
    const { statusCode, code, message } = errorAnswer(err)
    // A request refused because the service is closing is expected at every deploy: not an error with its stack.
    if (statusCode >= 500 && code !== 'SERVICE_CLOSING') request.log.error({ err }, 'request failed')
    else request.log.info({ code, statusCode }, err.message)
    if (err.headers) void reply.headers(err.headers)
    if (statusCode === 503 && !reply.hasHeader('retry-after')) void reply.header('retry-after', String(err.retryAfterSeconds ?? 1))
    const details = err[DETAILS]
    const base = errorBody(statusCode, code, message)
    // The four fields come first and cannot be overridden by a detail of the same name.
    const body = details ? { ...base, ...details, ...base } : base
    // Sent as text, not through the route's response schema for the status: that schema may describe another body
    // (the readiness probe's 503 is its report), which would drop the four fields, or only the four (not the details).
    void reply.code(statusCode).type('application/json; charset=utf-8').send(JSON.stringify(body))
  })

  app.setNotFoundHandler((request, reply) => {
    // A URL the router refused arrives here (refused-url.ts), after the hooks every request runs.
    const refused = refusalOf(request)
    if (refused) return void reply.send(refused)
    void reply.code(404).send(errorBody(404, 'NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0] ?? ''} not found`))
  })
}
