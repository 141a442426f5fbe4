import createError from '@fastify/error'

/**
 * Every error the chassis raises, keyed by its code. The HTTP error body carries the same `code`.
 */
export const ChassisErrors = {
  CHASSIS_CONFIG_INVALID: createError<'CHASSIS_CONFIG_INVALID', [string]>('CHASSIS_CONFIG_INVALID', 'Invalid configuration: %s'),
  CHASSIS_DUPLICATE_HEALTH_CHECK: createError<'CHASSIS_DUPLICATE_HEALTH_CHECK', 500, [string]>(
    'CHASSIS_DUPLICATE_HEALTH_CHECK', 'Health check "%s" is already registered', 500)
} as const

/** An error carrying an HTTP status and a stable code, for handlers to throw. */
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
