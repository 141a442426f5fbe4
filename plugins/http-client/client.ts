import { setTimeout as sleep } from 'node:timers/promises'
import { Pool, type Dispatcher } from 'undici'
import { CircuitBreaker, type BreakerState } from '../chassis/index.js'
import { UpstreamAnswerError, UpstreamUnavailableError } from './errors.js'
import { MAX_UPSTREAM_RETRY_AFTER_S, resolveServiceClientOptions, type ServiceClientOptions } from './options.js'

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

/** A declared length past `maxResponseBytes`, told apart from undici's own error for one that streams past it. */
class AnswerTooLong extends Error {}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])
const RETRYABLE_STATUS = new Set([502, 503, 504])

/**
 * A keep-alive client for calls between the platform's services: one budget per call (`timeoutMs`, retries and
 * backoff included) and per attempt, retries with backoff for idempotent calls only, and a circuit breaker, so a
 * caller whose dependency is down gets UpstreamUnavailableError (503 with Retry-After) within the call's budget and
 * never hangs. An upstream's own Retry-After on a 503 is honoured: not retried, and passed on. An answer longer
 * than `maxResponseBytes` is read no further than that (502 UPSTREAM_ERROR): a faulty upstream cannot fill this process's
 * memory. W3C trace context is added by the undici instrumentation when tracing runs. 4xx answers are returned, not
 * thrown: they are the callee's answer.
 */
export class ServiceClient {
  readonly name: string
  readonly #pool: Pool
  readonly #breaker: CircuitBreaker
  readonly #timeoutMs: number
  readonly #attemptTimeoutMs: number
  readonly #retries: number
  readonly #retryBaseMs: number
  readonly #headers: Record<string, string>
  readonly #maxResponseBytes: number
  #calls = 0
  #failures = 0
  #retried = 0
  #rejected = 0

  constructor (rawOptions: ServiceClientOptions) {
    const options = resolveServiceClientOptions(rawOptions)
    this.name = options.name
    this.#timeoutMs = options.timeoutMs
    this.#attemptTimeoutMs = options.attemptTimeoutMs
    this.#retries = options.retries
    this.#retryBaseMs = options.retryBaseMs
    this.#headers = options.headers
    this.#maxResponseBytes = options.maxResponseBytes
    this.#breaker = new CircuitBreaker(options.breakerThreshold, options.breakerCooldownMs)
    this.#pool = new Pool(new URL(options.baseUrl).origin, {
      connections: options.connections,
      // Undici takes whole milliseconds; the attempt's signal holds the exact budget.
      connectTimeout: Math.ceil(this.#attemptTimeoutMs),
      headersTimeout: Math.ceil(this.#attemptTimeoutMs),
      bodyTimeout: Math.ceil(this.#attemptTimeoutMs),
      maxResponseSize: options.maxResponseBytes,
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
    const deadline = performance.now() + this.#timeoutMs
    let reason = 'no attempt made'
    let upstreamRetryAfterS = 0
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        const backoff = Math.random() * this.#retryBaseMs * 2 ** (attempt - 1)
        // A retry that could not start within the budget is not made: the call settles within it.
        if (performance.now() + backoff >= deadline) break
        this.#retried++
        await sleep(backoff)
      }
      const left = deadline - performance.now()
      // Whole milliseconds (AbortSignal.timeout takes no fraction), and the first attempt is always made. Decided
      // before the breaker: one that lets this call probe expects it to report, which a call that stops here would not.
      const budget = Math.max(attempt === 0 ? 1 : 0, Math.floor(Math.min(this.#attemptTimeoutMs, left)))
      if (budget < 1) break
      if (!this.#breaker.allow()) {
        this.#rejected++
        throw new UpstreamUnavailableError(this.name, 'circuit open after repeated failures', this.#retryAfterS(upstreamRetryAfterS))
      }
      this.#calls++
      const epoch = this.#breaker.epoch
      try {
        const res = await this.#pool.request({
          method,
          path: req.query ? `${req.path}?${queryString(req.query)}` : req.path,
          headers: { accept: 'application/json', ...this.#headers, ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}), ...req.headers },
          ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
          signal: AbortSignal.timeout(budget)
        })
        // An instance that is closing (its answer closes the connection) is retried at once: the next attempt's
        // connection may reach another instance. Any other 503 with Retry-After is load shedding or an outage the
        // upstream knows of: it said when to come back, so no retry sooner.
        const retryAfterS = res.statusCode === 503 && !closesConnection(res.headers.connection) ? retryAfterSeconds(res.headers['retry-after']) : undefined
        if (RETRYABLE_STATUS.has(res.statusCode)) {
          // Its body is not used: read and dropped (past 128 KiB, with its connection), whatever its length.
          await res.body.dump()
          this.#failed(epoch)
          reason = `answered ${res.statusCode}`
          if (retryAfterS !== undefined) {
            upstreamRetryAfterS = retryAfterS
            break
          }
          continue
        }
        // Undici counts the bytes as they come; a declared length past the bound is refused before any of them. An
        // answer without a body (to HEAD, a 204 or 304) may declare any length.
        if (method !== 'HEAD' && res.statusCode !== 204 && res.statusCode !== 304 && Number(res.headers['content-length']) > this.#maxResponseBytes) {
          // A stream destroyed after its end was queued still emits its error: heard here, not as an uncaught one.
          res.body.on('error', () => {}).destroy()
          throw new AnswerTooLong()
        }
        const text = await res.body.text()
        this.#breaker.success()
        return { status: res.statusCode, headers: res.headers, body: parseBody(text, res.headers['content-type']) as T }
      } catch (error) {
        // The same call would get the same answer: not retried. The upstream did answer (not a 502-504), so the breaker
        // hears a success.
        if (error instanceof AnswerTooLong || (error as { code?: string }).code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
          this.#breaker.success()
          throw new UpstreamAnswerError(this.name, `more than ${this.#maxResponseBytes} bytes`)
        }
        this.#failed(epoch)
        // The error's code, not its message: undici's names the upstream's address, which callers are not told.
        reason = (error as Error).name === 'TimeoutError' ? `no answer within ${left <= this.#attemptTimeoutMs ? this.#timeoutMs : this.#attemptTimeoutMs} ms` : `request failed (${(error as { code?: string }).code ?? (error as Error).name})`
      }
    }
    throw new UpstreamUnavailableError(this.name, reason, this.#retryAfterS(upstreamRetryAfterS))
  }

  /** Seconds a caller is told to wait: the upstream's own Retry-After or the breaker's cooldown, whichever is later. */
  #retryAfterS (upstreamS: number): number {
    return Math.max(1, upstreamS, Math.ceil(this.#breaker.retryAfterMs / 1000))
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

/** A Retry-After in whole seconds (given so, or as an HTTP date), from 1 to MAX_UPSTREAM_RETRY_AFTER_S; undefined when absent or unreadable. */
function retryAfterSeconds (value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim()
  if (text === undefined || text === '') return undefined
  const seconds = /^\d{1,9}$/.test(text) ? Number(text) : Math.ceil((Date.parse(text) - now) / 1000)
  return Number.isNaN(seconds) ? undefined : Math.min(MAX_UPSTREAM_RETRY_AFTER_S, Math.max(1, seconds))
}

function closesConnection (value: string | string[] | undefined): boolean {
  return [value ?? []].flat().some((v) => /(^|,)\s*close\s*(,|$)/i.test(v))
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
