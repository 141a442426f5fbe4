import { setTimeout as sleep } from 'node:timers/promises'
import { Pool, type Dispatcher } from 'undici'
import { CircuitBreaker, type BreakerState } from '../chassis/index.js'
import { UpstreamUnavailableError } from './errors.js'
import { resolveServiceClientOptions, type ServiceClientOptions } from './options.js'

export type { ServiceClientOptions }

export interface ServiceRequest {
  method?: Dispatcher.HttpMethod
  path: string
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  headers?: Record<string, string>
  /** Retried on failure; GET, HEAD, PUT, DELETE and OPTIONS are idempotent unless this says otherwise. */
  idempotent?: boolean
}

export interface ServiceResponse<T> {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: T
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])
const RETRYABLE_STATUS = new Set([502, 503, 504])

/**
 * A keep-alive client for calls between the platform's services: per-attempt timeouts, retries with backoff for
 * idempotent calls only, and a circuit breaker, so a caller whose dependency is down gets UpstreamUnavailableError
 * (503 with Retry-After) within its budget and never hangs. W3C trace context is added by the undici
 * instrumentation when tracing runs. 4xx answers are returned, not thrown: they are the callee's answer.
 */
export class ServiceClient {
  readonly name: string
  readonly #pool: Pool
  readonly #breaker: CircuitBreaker
  readonly #timeoutMs: number
  readonly #retries: number
  readonly #retryBaseMs: number
  readonly #headers: Record<string, string>
  #calls = 0
  #failures = 0
  #retried = 0
  #rejected = 0

  constructor (rawOptions: ServiceClientOptions) {
    const options = resolveServiceClientOptions(rawOptions)
    this.name = options.name
    this.#timeoutMs = options.timeoutMs
    this.#retries = options.retries
    this.#retryBaseMs = options.retryBaseMs
    this.#headers = options.headers
    this.#breaker = new CircuitBreaker(options.breakerThreshold, options.breakerCooldownMs)
    this.#pool = new Pool(new URL(options.baseUrl).origin, {
      connections: options.connections,
      connectTimeout: this.#timeoutMs,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      keepAliveTimeout: 4000
    })
  }

  get breakerState (): BreakerState {
    return this.#breaker.state
  }

  getStats (): { breaker: BreakerState, calls: number, failures: number, retries: number, rejectedByBreaker: number } {
    return { breaker: this.#breaker.state, calls: this.#calls, failures: this.#failures, retries: this.#retried, rejectedByBreaker: this.#rejected }
  }

  async request<T = unknown> (req: ServiceRequest): Promise<ServiceResponse<T>> {
    const method = req.method ?? 'GET'
    const idempotent = req.idempotent ?? IDEMPOTENT.has(method)
    const attempts = 1 + (idempotent ? this.#retries : 0)
    let reason = 'no attempt made'
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        this.#retried++
        await sleep(Math.random() * this.#retryBaseMs * 2 ** (attempt - 1))
      }
      if (!this.#breaker.allow()) {
        this.#rejected++
        throw new UpstreamUnavailableError(this.name, 'circuit open after repeated failures', Math.max(1, Math.ceil(this.#breaker.retryAfterMs / 1000)))
      }
      this.#calls++
      const epoch = this.#breaker.epoch
      try {
        const res = await this.#pool.request({
          method,
          path: req.query ? `${req.path}?${queryString(req.query)}` : req.path,
          headers: { accept: 'application/json', ...this.#headers, ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}), ...req.headers },
          ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
          signal: AbortSignal.timeout(this.#timeoutMs)
        })
        const text = await res.body.text()
        if (RETRYABLE_STATUS.has(res.statusCode)) {
          this.#failed(epoch)
          reason = `answered ${res.statusCode}`
          continue
        }
        this.#breaker.success()
        return { status: res.statusCode, headers: res.headers, body: parseBody(text, res.headers['content-type']) as T }
      } catch (error) {
        this.#failed(epoch)
        reason = (error as Error).name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : (error as Error).message || (error as { code?: string }).code || 'request failed'
      }
    }
    throw new UpstreamUnavailableError(this.name, reason, Math.max(1, Math.ceil(this.#breaker.retryAfterMs / 1000)))
  }

  async close (): Promise<void> {
    await this.#pool.close()
  }

  // Calls in flight together when the upstream stalls count once against the breaker, not once each.
  #failed (epoch: number): void {
    this.#failures++
    this.#breaker.failure(epoch)
  }
}

/** JSON when the service says so (and it parses), the text otherwise: a non-JSON answer is still an answer. */
function parseBody (text: string, type: string | string[] | undefined): unknown {
  if (text === '') return undefined
  if (!String(type ?? '').includes('json')) return text
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function queryString (query: Record<string, string | number | boolean | undefined>): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v))
  return params.toString()
}

export function createServiceClient (options: ServiceClientOptions): ServiceClient {
  return new ServiceClient(options)
}
