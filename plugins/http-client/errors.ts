import createError from '@fastify/error'
import { HttpError } from '../chassis/index.js'

/** Every error the service client raises at start-up, keyed by its code (calls fail with UpstreamUnavailableError or UpstreamAnswerError). */
export const HttpClientErrors = {
  HTTP_CLIENT_INVALID_OPTIONS: createError<'HTTP_CLIENT_INVALID_OPTIONS', [string]>('HTTP_CLIENT_INVALID_OPTIONS', 'Invalid service client options for %s')
} as const

/**
 * The error a route gets when a service it depends on cannot answer: 503 with Retry-After and a stable code, which
 * the chassis's error handler turns into the JSON body. `upstream` names the service.
 */
export class UpstreamUnavailableError extends HttpError {
  readonly upstream: string
  readonly retryAfterSeconds: number
  constructor (upstream: string, reason: string, retryAfterSeconds: number) {
    super(503, 'UPSTREAM_UNAVAILABLE', `${upstream} is unavailable: ${reason}`, { 'retry-after': String(retryAfterSeconds) })
    this.name = 'UpstreamUnavailableError'
    this.upstream = upstream
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/**
 * The error a route gets when a service it depends on answered what its client does not take (an answer longer than
 * `maxResponseBytes`): 502 UPSTREAM_ERROR. Not retried, and not a failure of the breaker: the upstream answers.
 */
export class UpstreamAnswerError extends HttpError {
  readonly upstream: string
  constructor (upstream: string, reason: string) {
    super(502, 'UPSTREAM_ERROR', `${upstream} answered ${reason}`)
    this.name = 'UpstreamAnswerError'
    this.upstream = upstream
  }
}
