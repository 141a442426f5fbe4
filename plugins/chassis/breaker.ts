export type BreakerState = 'closed' | 'open' | 'half_open'

// A few lines of state shared by every call to one dependency (Redis, another service); checked synchronously on the hot path,
// which a wrapper-per-function breaker library cannot offer without an extra promise per call.
export class CircuitBreaker {
  #state: BreakerState = 'closed'
  #failures = 0
  #openedAt = 0
  #probing = false
  readonly #threshold: number
  readonly #cooldownMs: number
  readonly #onChange: (state: BreakerState) => void

  constructor (threshold: number, cooldownMs: number, onChange: (state: BreakerState) => void = () => {}) {
    this.#threshold = threshold
    this.#cooldownMs = cooldownMs
    this.#onChange = onChange
  }

  get state (): BreakerState {
    return this.#state
  }

  /** Ms until an open breaker lets a probe through (0 when it is not open). */
  get retryAfterMs (): number {
    return this.#state === 'open' ? Math.max(0, this.#cooldownMs - (Date.now() - this.#openedAt)) : 0
  }

  /** True when a command may be sent; after the cooldown one probe goes through. */
  allow (): boolean {
    if (this.#state === 'closed') return true
    if (this.#state === 'open' && Date.now() - this.#openedAt >= this.#cooldownMs) this.#set('half_open')
    if (this.#state === 'half_open' && !this.#probing) {
      this.#probing = true
      return true
    }
    return false
  }

  success (): void {
    this.#failures = 0
    this.#probing = false
    if (this.#state !== 'closed') this.#set('closed')
  }

  failure (): void {
    this.#failures++
    this.#probing = false
    if (this.#state === 'half_open' || (this.#state === 'closed' && this.#failures >= this.#threshold)) {
      this.#openedAt = Date.now()
      this.#set('open')
    }
  }

  /** Opens at once, e.g. when the connection is known to be down. */
  trip (): void {
    if (this.#state === 'open') return
    this.#openedAt = Date.now()
    this.#probing = false
    this.#set('open')
  }

  #set (state: BreakerState): void {
    this.#state = state
    this.#onChange(state)
  }
}
