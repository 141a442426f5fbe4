import type { RateLimitPolicy } from './policies.js'

/** The outcome for one policy of one request. */
export interface PolicyResult {
  policy: RateLimitPolicy
  allowed: boolean
  /** Units left in the trailing window after this request. */
  remaining: number
  /** Ms until one more unit frees up (0 when some are left). */
  resetMs: number
  /** Ms until this request's cost would be admitted (0 when allowed). */
  retryAfterMs: number
}

export interface StoreCheck {
  /** Identity-scoped key per policy; all of a request's policies are decided together. */
  keys: string[]
  policies: RateLimitPolicy[]
  cost: number
  /** false: look without consuming (getRemainingRequests). */
  consume: boolean
}

/**
 * A store decides all of a request's policies at once, atomically: either every policy admits the cost and all
 * of them record it, or none records anything.
 */
export interface RateLimitStore {
  check: (check: StoreCheck) => Promise<PolicyResult[]>
}
