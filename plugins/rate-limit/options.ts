import { MAX_TIMER_MS } from '../chassis/index.js'
import { MAX_BUDGET_MS } from '../redis/index.js'
import { RateLimitErrors } from './errors.js'
import type { RateLimiterOptions } from './rate-limiter.js'

export const rateLimiterDefaults = Object.freeze({
  prefix: 'rl:',
  timeoutMs: 100,
  breakerThreshold: 5,
  breakerCooldownMs: 2000,
  maxKeys: 100_000,
  presenceIntervalMs: 1000
})

export type ResolvedRateLimiterOptions = Readonly<typeof rateLimiterDefaults> & Omit<RateLimiterOptions, keyof typeof rateLimiterDefaults>

/** The options merged over their defaults once, every problem named in one coded error. */
export function resolveRateLimiterOptions (options: RateLimiterOptions): ResolvedRateLimiterOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
  const o = { ...rateLimiterDefaults, ...defined } as ResolvedRateLimiterOptions
  const problems: string[] = []
  if (typeof o.prefix !== 'string') problems.push('prefix must be a string')
  // Node fires a timer above MAX_TIMER_MS at once: every call would time out, every heartbeat run in a loop.
  if (!(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0 && o.timeoutMs <= MAX_BUDGET_MS)) problems.push(`timeoutMs must be a positive number up to ${MAX_BUDGET_MS}`)
  for (const key of ['breakerThreshold', 'maxKeys'] as const) if (!Number.isInteger(o[key]) || o[key] < 1) problems.push(`${key} must be a positive integer`)
  if (!(Number.isFinite(o.breakerCooldownMs) && o.breakerCooldownMs >= 0 && o.breakerCooldownMs <= MAX_TIMER_MS)) problems.push(`breakerCooldownMs must be a non-negative number up to ${MAX_TIMER_MS}`)
  if (!(Number.isFinite(o.presenceIntervalMs) && o.presenceIntervalMs > 0 && o.presenceIntervalMs <= MAX_TIMER_MS)) problems.push(`presenceIntervalMs must be a positive number up to ${MAX_TIMER_MS}`)
  if (problems.length > 0) throw new RateLimitErrors.RATE_LIMIT_INVALID_OPTIONS(problems.join('; '))
  return Object.freeze(o)
}
