import { HttpClientErrors } from './errors.js'

export interface ServiceClientOptions {
  /** Name of the service called, in errors and logs. */
  name: string
  /** Origin of the service, e.g. http://127.0.0.1:3001. */
  baseUrl: string
  /**
   * Budget of one call, in ms: every attempt (connection, answer and body), the backoff between them and the breaker
   * included. A call settles within it: no attempt or backoff starts that would end past it. @default 2000
   */
  timeoutMs?: number
  /**
   * Budget of one attempt, in ms, within `timeoutMs`: shorter, it leaves time to retry a stalled attempt on another
   * connection (behind a Kubernetes Service, possibly another instance). @default timeoutMs
   */
  attemptTimeoutMs?: number
  /**
   * Extra attempts of an idempotent call after a network error, a timeout or a 502/503/504, within `timeoutMs`. A
   * 503 that carries Retry-After is not retried: the upstream asked to be left alone (its wait, at most 300 s, is
   * passed on). @default 2
   */
  retries?: number
  /** First backoff in ms, doubled per attempt, with full jitter. @default 50 */
  retryBaseMs?: number
  /** Consecutive failed calls that open the breaker; the calls failing in one stall count once. @default 5 */
  breakerThreshold?: number
  /** Ms the breaker stays open before one probe. @default 5000 */
  breakerCooldownMs?: number
  /**
   * Bytes of one answer's body at most: a longer one (by its Content-Length or as it streams in) is dropped with its
   * connection and the call fails 502 UPSTREAM_ERROR, not retried, so a faulty upstream cannot fill this process's
   * memory. @default 8388608 (8 MiB)
   */
  maxResponseBytes?: number
  /** Keep-alive connections to the service at most. @default 16 */
  connections?: number
  /** Headers sent with every call, e.g. the platform's service key. */
  headers?: Record<string, string>
}

export const serviceClientDefaults = Object.freeze({
  timeoutMs: 2000,
  retries: 2,
  retryBaseMs: 50,
  breakerThreshold: 5,
  breakerCooldownMs: 5000,
  maxResponseBytes: 8 * 1024 * 1024,
  connections: 16
})

export type ResolvedServiceClientOptions = Readonly<Required<Omit<ServiceClientOptions, 'headers'>> & { headers: Record<string, string> }>

/** The longest Retry-After passed on from an upstream, in seconds: a wrong or hostile one does not park callers for hours. */
export const MAX_UPSTREAM_RETRY_AFTER_S = 300

/** The options merged over their defaults once, every problem named in one coded error. */
export function resolveServiceClientOptions (options: ServiceClientOptions): ResolvedServiceClientOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
  const o = { ...serviceClientDefaults, headers: {}, ...defined } as Required<ServiceClientOptions>
  const problems: string[] = []
  if (typeof o.name !== 'string' || o.name === '') problems.push('name must be a non-empty string')
  if (!URL.canParse(String(o.baseUrl)) || !/^https?:$/.test(new URL(String(o.baseUrl)).protocol)) problems.push('baseUrl must be an http or https URL')
  if (!(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0)) problems.push('timeoutMs must be a positive number')
  if (defined.attemptTimeoutMs === undefined) o.attemptTimeoutMs = o.timeoutMs
  if (!(Number.isFinite(o.attemptTimeoutMs) && o.attemptTimeoutMs > 0)) problems.push('attemptTimeoutMs must be a positive number')
  else if (o.attemptTimeoutMs > o.timeoutMs) problems.push('attemptTimeoutMs must not be more than timeoutMs')
  for (const key of ['breakerThreshold', 'connections', 'maxResponseBytes'] as const) if (!Number.isInteger(o[key]) || o[key] < 1) problems.push(`${key} must be a positive integer`)
  if (!Number.isInteger(o.retries) || o.retries < 0) problems.push('retries must be a non-negative integer')
  for (const key of ['retryBaseMs', 'breakerCooldownMs'] as const) if (!(Number.isFinite(o[key]) && o[key] >= 0)) problems.push(`${key} must be a non-negative number`)
  if (problems.length > 0) throw new HttpClientErrors.HTTP_CLIENT_INVALID_OPTIONS(`${String(o.name)}: ${problems.join('; ')}`)
  return Object.freeze(o)
}
