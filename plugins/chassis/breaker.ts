export type BreakerState = 'closed' | 'open' | 'half_open'

// A few lines of state shared by every call to one dependency (Redis, another service); checked synchronously on the hot path,
// which a wrapper-per-function breaker library cannot offer without an extra promise per call.
//
// It counts stalls, not calls: a failure counts only if its call started after the last counted failure. The calls
// in flight when a dependency stalls (a turn's batches, a burst of concurrent reads) all fail together; counted one
// by one, any burst of `threshold` calls would open the breaker on a single blip, and an open breaker sheds for its
// whole cooldown. A dependency that stays down still opens it: each wave of calls started after the previous counted
// failure counts once, so `threshold` waves (about `threshold` budgets of a stall under load, `threshold` calls one
// after another when it fails fast) open it.
export class CircuitBreaker {
  #state: BreakerState = 'closed'
  #failures = 0
  // Moves on with every counted failure (and trip): a number read at a call's start instead of a clock read.
  #epoch = 0
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

  /**
   * The failure epoch: read it when a call starts and hand it to `failure` if the call fails. It moves on with every
   * counted failure, so a call that started before one belongs to the stall already counted.
   */
  get epoch (): number {
    return this.#epoch
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

  /**
   * A call failed. `startedIn` is the `epoch` read when it started: a call started before the last counted failure
   * was caught by the same stall and changes nothing (nor does it re-open a half-open breaker whose probe is still
   * out). Without it, the failure counts.
   */
  failure (startedIn: number = this.#epoch): void {
    if (startedIn !== this.#epoch) return
    this.#epoch++
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
    // The calls in flight fail with the connection: the trip has counted them.
    this.#epoch++
    this.#openedAt = Date.now()
    this.#probing = false
    this.#set('open')
  }

  #set (state: BreakerState): void {
    this.#state = state
    this.#onChange(state)
  }
}
