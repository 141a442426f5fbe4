import { RateLimitErrors } from './errors.js'

export { RateLimitErrors }

/** One limit: at most `limit` units of cost in any trailing window of `windowMs`. */
export interface RateLimitPolicy {
  /** Name shown in headers, errors and metrics. */
  name: string
  limit: number
  windowMs: number
  /** What happens when the store is unreachable: `open` limits per instance in memory, `closed` refuses with 503. @default 'open' */
  onStoreFailure?: 'open' | 'closed'
  /** Report-only: decisions are counted and headers sent, but nothing is refused. @default false */
  shadow?: boolean
}

/** The presets: default 100/min, apiKey 1000/min, strict 10/min (admin routes). */
export const presets = {
  default: { name: 'default', limit: 100, windowMs: 60_000 },
  apiKey: { name: 'apiKey', limit: 1000, windowMs: 60_000 },
  strict: { name: 'strict', limit: 10, windowMs: 60_000 }
} as const satisfies Record<string, RateLimitPolicy>

export type PresetName = keyof typeof presets

const NAME = /^[A-Za-z0-9_.-]{1,64}$/

export function validatePolicy (policy: RateLimitPolicy): RateLimitPolicy {
  const problems: string[] = []
  if (typeof policy.name !== 'string' || !NAME.test(policy.name)) problems.push('name must be 1-64 letters, digits, _ . or -')
  if (!Number.isInteger(policy.limit) || policy.limit < 1) problems.push(`${policy.name}: limit must be a positive integer`)
  if (!Number.isInteger(policy.windowMs) || policy.windowMs < 1) problems.push(`${policy.name}: windowMs must be a positive integer`)
  if (policy.onStoreFailure !== undefined && policy.onStoreFailure !== 'open' && policy.onStoreFailure !== 'closed') problems.push(`${policy.name}: onStoreFailure must be open or closed`)
  if (policy.shadow !== undefined && typeof policy.shadow !== 'boolean') problems.push(`${policy.name}: shadow must be true or false`)
  if (problems.length > 0) throw new RateLimitErrors.RATE_LIMIT_INVALID_POLICY(problems.join('; '))
  return Object.freeze({ ...policy })
}
