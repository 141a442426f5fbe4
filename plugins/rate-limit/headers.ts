import type { FastifyReply } from 'fastify'
import { replyHeaderObject } from '../chassis/index.js'
import type { RateLimitPolicy } from './policies.js'
import type { Decision } from './rate-limiter.js'
import type { PolicyResult } from './store.js'

// Policies are frozen once validated, so the parts of their header values that never change are built once: the
// limit, the RateLimit-Policy item, the start of the RateLimit item and its end for an admission (whose reset is
// the window). Every answer sends them.
interface PolicyText { limit: string, policy: string, state: string, windowTail: string }
const policyTexts = new WeakMap<RateLimitPolicy, PolicyText>()
function textOf (p: RateLimitPolicy): PolicyText {
  let text = policyTexts.get(p)
  if (text === undefined) {
    const w = Math.ceil(p.windowMs / 1000)
    policyTexts.set(p, text = { limit: String(p.limit), policy: `"${p.name}";q=${p.limit};w=${w}`, state: `"${p.name}";r=`, windowTail: `;t=${w}` })
  }
  return text
}

function stateItem (r: PolicyResult): string {
  const text = textOf(r.policy)
  const waitMs = r.allowed ? r.resetMs : r.retryAfterMs
  return waitMs === r.policy.windowMs ? text.state + r.remaining + text.windowTail : `${text.state}${r.remaining};t=${Math.ceil(waitMs / 1000)}`
}

/**
 * Which rate-limit fields an answer carries: `both` the X-RateLimit trio and the IETF draft's fields, `x-ratelimit`
 * only X-RateLimit-Limit/Remaining/Reset (what most clients read, and @fastify/rate-limit's default), `draft` only
 * RateLimit-Policy and RateLimit. A refusal carries Retry-After whatever the choice.
 */
export type RateLimitHeaders = 'both' | 'x-ratelimit' | 'draft'

export const rateLimitHeaderChoices: readonly RateLimitHeaders[] = ['both', 'x-ratelimit', 'draft']

/**
 * X-RateLimit-Limit/Remaining/Reset (Reset in Unix epoch seconds) for the binding policy, and the IETF draft's
 * RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for every enforced policy, as
 * `fields` says. Shadow policies are left out: a caller that paced itself by one would be limited by it after all.
 * With no enforced policy (the binding undefined) an answer carries none.
 * On refusal, Retry-After is the real number of seconds until the request would be admitted.
 */
export function setRateLimitHeaders (reply: FastifyReply, decision: Decision, nowMs = Date.now(), fields: RateLimitHeaders = 'both'): void {
  const b = decision.binding
  if (!b) return
  const text = textOf(b.policy)
  // Every answer carries these: written into the reply's own header object when it is found, each by its constant
  // lower-case name; otherwise gathered and handed to `reply.headers`.
  const own = replyHeaderObject(reply)
  const h = own ?? {}
  if (fields !== 'draft') {
    const waitMs = decision.allowed ? b.resetMs : b.retryAfterMs
    h['x-ratelimit-limit'] = text.limit
    h['x-ratelimit-remaining'] = decision.allowed ? b.remaining : 0
    h['x-ratelimit-reset'] = Math.ceil((nowMs + waitMs) / 1000)
  }
  if (fields !== 'x-ratelimit') {
    const shown = decision.results.length === 1 ? decision.results : decision.results.filter((r) => r.policy.shadow !== true)
    h['ratelimit-policy'] = shown.length === 1 ? text.policy : shown.map((r) => textOf(r.policy).policy).join(', ')
    h.ratelimit = shown.length === 1 ? stateItem(b) : shown.map(stateItem).join(', ')
  }
  if (!decision.allowed) h['retry-after'] = Math.max(1, Math.ceil(b.retryAfterMs / 1000))
  if (own === undefined) void reply.headers(h)
}
