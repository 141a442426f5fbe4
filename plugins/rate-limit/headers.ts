import type { FastifyReply } from 'fastify'
import type { RateLimitPolicy } from './policies.js'
import type { Decision } from './rate-limiter.js'
import type { PolicyResult } from './store.js'

// Policies are frozen once validated, so the parts of their header items that never change are built once: the
// RateLimit-Policy item and the start of the RateLimit item. Every answer sends them.
interface PolicyText { policy: string, state: string }
const policyTexts = new WeakMap<RateLimitPolicy, PolicyText>()
function textOf (p: RateLimitPolicy): PolicyText {
  let text = policyTexts.get(p)
  if (text === undefined) policyTexts.set(p, text = { policy: `"${p.name}";q=${p.limit};w=${Math.ceil(p.windowMs / 1000)}`, state: `"${p.name}";r=` })
  return text
}

function stateItem (r: PolicyResult): string {
  return `${textOf(r.policy).state}${r.remaining};t=${Math.ceil((r.allowed ? r.resetMs : r.retryAfterMs) / 1000)}`
}

/**
 * X-RateLimit-Limit/Remaining/Reset (Reset in Unix epoch seconds,) for the binding
 * policy, and the IETF draft's RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for
 * every policy. On refusal, Retry-After is the real number of seconds until the request would be admitted.
 */
export function setRateLimitHeaders (reply: FastifyReply, decision: Decision, nowMs = Date.now()): void {
  const b = decision.binding
  if (!b) return
  const one = decision.results.length === 1
  const policies = one ? textOf(b.policy).policy : decision.results.map((r) => textOf(r.policy).policy).join(', ')
  const state = one ? stateItem(b) : decision.results.map(stateItem).join(', ')
  const waitMs = decision.allowed ? b.resetMs : b.retryAfterMs
  void reply
    .header('x-ratelimit-limit', b.policy.limit)
    .header('x-ratelimit-remaining', decision.allowed ? b.remaining : 0)
    .header('x-ratelimit-reset', Math.ceil((nowMs + waitMs) / 1000))
    .header('ratelimit-policy', policies)
    .header('ratelimit', state)
  if (!decision.allowed) void reply.header('retry-after', Math.max(1, Math.ceil(b.retryAfterMs / 1000)))
}
