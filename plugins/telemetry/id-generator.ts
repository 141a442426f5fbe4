import { randomBytes } from 'node:crypto'

const POOL_BYTES = 4096
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/**
 * Trace and span ids cut from a pool of random hex digits (crypto.randomBytes, 4 KiB at a time): an id is a slice of
 * a string. The SDK's generator wrote four Math.random() words into a buffer and hex-encoded it, for each id: at the
 * shipped sampling every request that starts a trace pays for two ids (its trace's and its span's), and nine in ten
 * are never recorded. An all-zero id (invalid in W3C trace context) is never handed out.
 */
export class PooledIdGenerator {
  #pool = ''
  #next = 0
  #returned: string | undefined

  generateTraceId (): string {
    const returned = this.#returned
    if (returned !== undefined) {
      this.#returned = undefined
      return returned
    }
    const id = this.#take(32)
    return id === ZERO_TRACE ? this.generateTraceId() : id
  }

  generateSpanId (): string {
    const id = this.#take(16)
    return id === ZERO_SPAN ? this.generateSpanId() : id
  }

  /**
   * Has the next `generateTraceId` hand out this id again: one drawn to decide a new trace's sampling ahead of the
   * SDK (root-sampling.ts), which then starts the sampled trace's span with that same id, so that its sampler sees
   * the id the decision was made on.
   */
  giveBackTraceId (id: string): void {
    this.#returned = id
  }

  #take (digits: number): string {
    if (this.#next + digits > this.#pool.length) {
      this.#pool = randomBytes(POOL_BYTES).toString('hex')
      this.#next = 0
    }
    const id = this.#pool.slice(this.#next, this.#next + digits)
    this.#next += digits
    return id
  }
}
