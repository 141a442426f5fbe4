import type { FastifyReply } from 'fastify'
import type { RateLimitPolicy } from './policies.js'
import type { Decision } from './rate-limiter.js'

// Policies are frozen once validated, so their RateLimit-Policy item can be computed once.
const policyFields = new WeakMap<RateLimitPolicy, string>()
function policyField (p: RateLimitPolicy): string {
  let field = policyFields.get(p)
  if (field === undefined) policyFields.set(p, field = `"${p.name}";q=${p.limit};w=${Math.ceil(p.windowMs / 1000)}`)
  return field
}

/**
 * X-RateLimit-Limit/Remaining/Reset (Reset in Unix epoch seconds, as the specification shows) for the binding
 * policy, and the IETF draft's RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for
 * every policy. On refusal, Retry-After is the real number of seconds until the request would be admitted.
 */
export function setRateLimitHeaders (reply: FastifyReply, decision: Decision, nowMs = Date.now()): void {
  const b = decision.binding
  if (!b) return
  const policies = decision.results.length === 1 ? policyField(b.policy) : decision.results.map((r) => policyField(r.policy)).join(', ')
  const state = decision.results.map((r) => `"${r.policy.name}";r=${r.remaining};t=${Math.ceil((r.allowed ? r.resetMs : r.retryAfterMs) / 1000)}`).join(', ')
  const waitMs = decision.allowed ? b.resetMs : b.retryAfterMs
  void reply.headers({
    'x-ratelimit-limit': b.policy.limit,
    'x-ratelimit-remaining': decision.allowed ? b.remaining : 0,
    'x-ratelimit-reset': Math.ceil((nowMs + waitMs) / 1000),
    'ratelimit-policy': policies,
    ratelimit: state
  })
  if (!decision.allowed) void reply.header('retry-after', Math.max(1, Math.ceil(b.retryAfterMs / 1000)))
}
