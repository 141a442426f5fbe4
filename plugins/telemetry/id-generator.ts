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
  #bytes: Buffer = Buffer.alloc(0)
  #next = 0
  #returned: string | undefined
  #lastCut = ''
  #lastHash = 0

  generateTraceId (): string {
    const returned = this.#returned
    if (returned !== undefined) {
      this.#returned = undefined
      return returned
    }
    const id = this.#take(32)
    if (id === ZERO_TRACE) return this.generateTraceId()
    // The pool may have been refilled by #take: the id's bytes start where its hex digits do, in the new pool.
    const byte = (this.#next - 32) / 2
    const bytes = this.#bytes
    this.#lastHash = (bytes.readUInt32BE(byte) ^ bytes.readUInt32BE(byte + 4) ^ bytes.readUInt32BE(byte + 8) ^ bytes.readUInt32BE(byte + 12)) >>> 0
    this.#lastCut = id
    return id
  }

  /**
   * The hash the SDK's TraceIdRatioBasedSampler makes of a trace id (its four 32-bit words XORed, which `_accumulate`
   * gets by parsing the hex digits back), read from the pool's bytes when the id is the last one cut from it;
   * undefined for any other id.
   */
  traceHashOf (id: string): number | undefined {
    return id === this.#lastCut ? this.#lastHash : undefined
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
      this.#bytes = randomBytes(POOL_BYTES)
      this.#pool = this.#bytes.toString('hex')
      this.#next = 0
    }
    const id = this.#pool.slice(this.#next, this.#next + digits)
    this.#next += digits
    return id
  }
}
