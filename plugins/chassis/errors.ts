import createError from '@fastify/error'

/**
 * Every error the chassis raises, keyed by its code. The HTTP error body carries the same `code`.
 */
export const ChassisErrors = {
  CHASSIS_CONFIG_INVALID: createError<'CHASSIS_CONFIG_INVALID', [string]>('CHASSIS_CONFIG_INVALID', 'Invalid configuration: %s'),
  CHASSIS_SHUTDOWN_FAILED: createError<'CHASSIS_SHUTDOWN_FAILED', [{ cause: unknown }]>(
    'CHASSIS_SHUTDOWN_FAILED', 'A plugin failed to close at shutdown'),
  CHASSIS_DUPLICATE_HEALTH_CHECK: createError<'CHASSIS_DUPLICATE_HEALTH_CHECK', 500, [string]>(
    'CHASSIS_DUPLICATE_HEALTH_CHECK', 'Health check "%s" is already registered', 500),
  CHASSIS_PLUGIN_ORDER: createError<'CHASSIS_PLUGIN_ORDER', 500, [string, string, string, string]>(
    'CHASSIS_PLUGIN_ORDER', '%s was registered before %s: register %s first, or pass %s: false', 500),
  CHASSIS_DECORATOR_CONFLICT: createError<'CHASSIS_DECORATOR_CONFLICT', 500, [string, string, string, string, string]>(
    'CHASSIS_DECORATOR_CONFLICT', '%s found app.%s, which is not %s as %s adds: rename that decorator, or pass %s: false', 500),
  SERVICE_CLOSING: createError<'SERVICE_CLOSING', 503, []>('SERVICE_CLOSING', 'The service is shutting down: send the request again, to another instance', 503),
  REQUEST_TIMEOUT: createError<'REQUEST_TIMEOUT', 408, [number]>('REQUEST_TIMEOUT', 'The request did not arrive within %d ms', 408),
  HEADERS_TOO_LARGE: createError<'HEADERS_TOO_LARGE', 431, []>('HEADERS_TOO_LARGE', 'The request headers are too large', 431),
  MALFORMED_REQUEST: createError<'MALFORMED_REQUEST', 400, []>('MALFORMED_REQUEST', 'The request is not valid HTTP', 400),
  EXPECTATION_FAILED: createError<'EXPECTATION_FAILED', 417, []>('EXPECTATION_FAILED', 'The only expectation met is 100-continue', 417),
  /** A JSON body whose bytes are not UTF-8 (RFC 8259: JSON text is UTF-8), declared so or not. */
  INVALID_JSON: createError<'INVALID_JSON', 400, [string]>('INVALID_JSON', 'Body is not valid JSON: %s', 400),
  UNSUPPORTED_MEDIA_TYPE: createError<'UNSUPPORTED_MEDIA_TYPE', 415, [string]>('UNSUPPORTED_MEDIA_TYPE', 'Unsupported Media Type: %s', 415),
  PRECONDITION_FAILED: createError<'PRECONDITION_FAILED', 412, []>(
    'PRECONDITION_FAILED', 'A precondition of the request (If-Match, If-Unmodified-Since) does not hold', 412),
  RANGE_NOT_SATISFIABLE: createError<'RANGE_NOT_SATISFIABLE', 416, []>(
    'RANGE_NOT_SATISFIABLE', 'The requested Range lies outside the content; Content-Range gives its length', 416),
  BAD_URL: createError<'BAD_URL', 400, []>('BAD_URL', 'The request path is not a valid percent-encoded URL', 400),
  PATH_SEGMENT_TOO_LONG: createError<'PATH_SEGMENT_TOO_LONG', 414, [number]>(
    'PATH_SEGMENT_TOO_LONG', 'A parameter in the request path is longer than %d characters', 414)
} as const

/**
 * An error carrying an HTTP status, a stable code and headers of its answer: the base of an error class declared in
 * an errors.ts (UpstreamUnavailableError), never constructed inline (test/error-catalogue.test.ts).
 */
export class HttpError extends Error {
  readonly statusCode: number
  readonly code: string
  readonly headers: Record<string, string>
  constructor (statusCode: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.name = 'HttpError'
    this.statusCode = statusCode
    this.code = code
    this.headers = headers
  }
}
