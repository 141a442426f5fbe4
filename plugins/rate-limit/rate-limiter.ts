import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { CircuitBreaker, withBudget, type RedisClient } from '../redis/index.js'
import { Handover, type Owed } from './handover.js'
import { MemoryStore } from './memory-store.js'
import { resolveRateLimiterOptions } from './options.js'
import { presets, validatePolicy, type RateLimitPolicy } from './policies.js'
import { Presence } from './presence.js'
import { RedisStore, type Decided } from './redis-store.js'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'

// Keyed by the client: the limiters of one instance share its client, and were each counted as an instance of their
// own, which divided every limit during an outage by twice the instances there were.
const instanceIds = new WeakMap<RedisClient, string>()

/** Owed keys charged to the store at a time after an outage. */
const CHARGE_SLICE = 256

function instanceIdOf (redis: RedisClient): string {
  let id = instanceIds.get(redis)
  if (id === undefined) instanceIds.set(redis, id = randomUUID())
  return id
}

export type DecisionSource = 'store' | 'fast-path' | 'fallback' | 'closed'

export interface Decision {
  allowed: boolean
  /** Where the decision came from: the shared store, the local record of a key known to be over, the in-process fallback, or a closed policy while the store is down. */
  source: DecisionSource
  results: PolicyResult[]
  /**
   * The result the headers describe: the refusing policy with the longest wait, or the one with the least room; an
   * enforced policy's only, since a shadow policy reports to the operator, not to the caller. Undefined when every
   * policy is a shadow one.
   */
  binding: PolicyResult | undefined
  /** True when only shadow policies would have refused. */
  shadowLimited: boolean
}

export interface RateLimiterOptions {
  /** Key prefix in the store. @default 'rl:' */
  prefix?: string
  /** Time budget of one store call, in ms. @default 100 */
  timeoutMs?: number
  /** Consecutive failed store calls that open the breaker (a batch of decisions is one call, the calls failing in one stall count once). @default 5 */
  breakerThreshold?: number
  /** @default 2000 */
  breakerCooldownMs?: number
  /** Keys the in-process store (and fallback) keeps at most. @default 100000 */
  maxKeys?: number
  /** A store of your own instead of Redis or memory. */
  store?: RateLimitStore
  /** The policy `getRemainingRequests` answers against when given none (the plugin passes its global policy). @default the default preset */
  defaultPolicy?: RateLimitPolicy
  /**
   * Heartbeat of this instance in the presence set over Redis, in ms: the live instances are those seen within
   * three heartbeats, and during an outage each admits only its share of a limit. @default 1000
   */
  presenceIntervalMs?: number
  /**
   * This instance's member name in the presence set. @default one random UUID per Redis client, shared by every
   * limiter on that client (the request limiter and the key-lookup budget of one instance count it once)
   */
  instanceId?: string
  /** Where the start and the end of a fallback episode are logged (e.g. `app.log`). */
  log?: FallbackLog
}

/** The two levels of a pino or Fastify logger that the limiter writes to. */
export interface FallbackLog {
  warn: (details: object, message: string) => void
  info: (details: object, message: string) => void
}

interface Episode {
  startedAt: number
  decisions: number
}

interface PolicyCounters {
  allowed: number
  limited: number
  shadowLimited: number
  fallback: number
  fastPath: number
}

/** A key is escaped so that `{`/`}` in an identity cannot change its Redis Cluster hash slot. */
function escapeIdentity (identity: string): string {
  return identity.includes('{') || identity.includes('}') ? identity.replace(/[{}]/g, (c) => (c === '{' ? '%7B' : '%7D')) : identity
}

/**
 * A request's cost as units to count, never fewer than it asks for: a fraction rounded up, a cost that is not a
 * number or is infinite taken as more than any limit (refused, as the stores refused it), and a negative one as 1
 * (it was admitted and counted nothing). A cost function fed by a caller's input (a batch's size, a header) can
 * then never buy requests that are not counted. 0 is a request the route declared free.
 */
function units (cost: number): number {
  if (cost === 0) return 0
  if (Number.isNaN(cost) || cost === Number.POSITIVE_INFINITY) return Number.MAX_SAFE_INTEGER
  return cost > 0 ? Math.ceil(cost) : 1
}

/**
 * Sliding-window rate limiting decided in the store in one atomic call per request for all its policies. When the
 * store fails or hangs, each policy fails open (an in-process limiter per instance admitting its share of the limit:
 * the limit divided by the live instances of the presence set) or closed, within the budget.
 * A key known to be over its limit is answered from memory until it frees, so a flood costs the store nothing.
 */
export class RateLimiter {
  readonly #store: RateLimitStore
  readonly #fallback: MemoryStore
  readonly #shared: boolean
  /** The Redis store this limiter made, which runs each of its batches under the budget itself. */
  readonly #batched: RedisStore | undefined
  readonly #breaker: CircuitBreaker
  readonly #timeoutMs: number
  readonly #prefix: string
  readonly #overUntil: LRUCache<string, number>
  readonly #counters = new Map<string, PolicyCounters>()
  readonly #defaultPolicy: RateLimitPolicy
  readonly #presence: Presence | undefined
  readonly #redis: RedisClient | undefined
  readonly #log: FallbackLog | undefined
  readonly #shares = new WeakMap<RateLimitPolicy, RateLimitPolicy>()
  /** With a shared store: what carries a key's count into the fallback and back. */
  readonly #handover: Handover | undefined
  /** The fallback admitted something since the last charge began: the next store answer or heartbeat charges it. */
  #chargeDue = false
  #charging = false
  /** A reconnected client charges what is owed before any request it carries is decided. */
  readonly #onReady = (): void => { this.#chargeOwed() }
  #episode: Episode | undefined

  constructor (redis: RedisClient | undefined, rawOptions: RateLimiterOptions = {}) {
    const options = resolveRateLimiterOptions(rawOptions)
    this.#prefix = options.prefix
    this.#timeoutMs = options.timeoutMs
    this.#defaultPolicy = options.defaultPolicy ? validatePolicy(options.defaultPolicy) : presets.default
    this.#breaker = new CircuitBreaker(options.breakerThreshold, options.breakerCooldownMs)
    this.#fallback = new MemoryStore({ maxKeys: options.maxKeys })
    this.#batched = options.store === undefined && redis
      ? new RedisStore(redis, { budget: (call) => withBudget(this.#breaker, this.#timeoutMs, call) })
      : undefined
    this.#store = options.store ?? this.#batched ?? this.#fallback
    this.#shared = this.#store !== this.#fallback
    this.#handover = this.#shared ? new Handover(options.maxKeys) : undefined
    this.#overUntil = new LRUCache({ max: options.maxKeys })
    this.#log = options.log
    this.#redis = options.store === undefined ? redis : undefined
    if (redis && options.store === undefined) {
      redis.on('ready', this.#onReady)
      // A heartbeat Redis answered says it is back, also to an instance no request has reached since the outage.
      this.#presence = new Presence(redis, `${this.#prefix}instances`, options.instanceId ?? instanceIdOf(redis), options.presenceIntervalMs,
        async (call) => {
          const answered = await withBudget(this.#breaker, this.#timeoutMs, call)
          this.#chargeOwed()
          return answered
        })
    }
  }

  /**
   * Resolves once the Redis client has connected (or failed to: an unreachable Redis does not hold it up) and this
   * instance has announced itself, or after `timeoutMs`. A freshly started instance that decides before its client
   * is connected can only fall back, and then counts only itself.
   */
  async ready (timeoutMs = 2000): Promise<void> {
    const client = this.#redis
    if (!client || !this.#presence) return
    if (client.status !== 'ready' && client.status !== 'end') {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          client.off('ready', done).off('error', done).off('end', done)
          resolve()
        }
        const timer = setTimeout(done, timeoutMs)
        client.once('ready', done).once('error', done).once('end', done)
      })
    }
    if (client.status === 'ready') await this.#presence.beat()
  }

  /** Stops the presence heartbeat and leaves the presence set (the client stays open: its owner closes it). */
  async close (): Promise<void> {
    this.#redis?.off('ready', this.#onReady)
    await this.#presence?.close()
  }

  #keys (identity: string, policies: RateLimitPolicy[]): string[] {
    const head = `${this.#prefix}{${escapeIdentity(identity)}}:`
    const keys: string[] = []
    for (const p of policies) keys.push(head + p.name)
    return keys
  }

  /**
   * Decides one request: every enforced policy must admit `cost` units, and then all of them record it (a cost that
   * is not a number of units is counted as `units` reads it: never as free, never as negative). Shadow
   * policies are decided on their own (in the same call when there are no others), so they never hold back a count.
   */
  check (identity: string, policies: RateLimitPolicy[], cost = 1): Promise<Decision> {
    return new Promise((resolve) => { this.checkWith(identity, policies, cost, resolve) })
  }

  /**
   * `check` without promises, for the path every request takes: `answer` is called once with the decision, at
   * once for one that needs no store call. A store failure is decided by the fallback, so there is no error.
   */
  checkWith (identity: string, policies: RateLimitPolicy[], cost: number, answer: (decision: Decision) => void): void {
    if (policies.length === 0) return answer({ allowed: true, source: 'store', results: [], binding: undefined, shadowLimited: false })
    cost = units(cost)
    let shadows = 0
    for (const p of policies) if (p.shadow) shadows++
    if (shadows === 0 || shadows === policies.length) {
      this.#checkGroup(identity, policies, cost, (results, source) => { answer(this.#decide(results, source)) })
      return
    }
    type Group = { results: PolicyResult[], source: DecisionSource }
    let enforced: Group | undefined
    let shadowed: Group | undefined
    const both = (): void => {
      if (!enforced || !shadowed) return
      // A shadow policy never refuses: its store failing closed does not make the enforced group's refusal a 503.
      const source = enforced.source !== 'store' || shadowed.source === 'closed' ? enforced.source : shadowed.source
      answer(this.#decide([...enforced.results, ...shadowed.results], source))
    }
    this.#checkGroup(identity, policies.filter((p) => !p.shadow), cost, (results, source) => { enforced = { results, source }; both() })
    this.#checkGroup(identity, policies.filter((p) => p.shadow), cost, (results, source) => { shadowed = { results, source }; both() })
  }

  /**
   * Decides one group of policies in the store (or the fast path, or the fallback) and hands the results to `then`.
   * Written with callbacks rather than promises, since every request takes it: the limiter's own Redis store
   * answers without a promise per request.
   */
  #checkGroup (identity: string, policies: RateLimitPolicy[], cost: number, then: (results: PolicyResult[], source: DecisionSource) => void): void {
    const keys = this.#keys(identity, policies)
    const now = Date.now()
    const fast = this.#overUntil.size > 0 ? this.#fastPath(keys, policies, now) : undefined
    if (fast) return then(fast, 'fast-path')
    const check = { keys, policies, cost, consume: true }
    const answer: Decided = (error, results) => {
      if (results === undefined) return this.#fellBack(error, keys, policies, cost, now, then)
      if (this.#episode) this.#endEpisode()
      if (this.#handover) {
        if (this.#chargeDue) this.#chargeOwed()
        this.#handover.counted(keys, results, now)
      }
      this.#noteRefusals(keys, results, cost, now)
      then(results, 'store')
    }
    if (this.#batched) return this.#batched.decide(check, answer)
    let asked: Promise<PolicyResult[]>
    try {
      asked = this.#shared ? withBudget(this.#breaker, this.#timeoutMs, () => this.#store.check(check)) : this.#store.check(check)
    } catch (error) {
      asked = Promise.reject(error)
    }
    asked.then((results) => { answer(undefined, results) }, (error: unknown) => { answer(error ?? new Error('rate-limit store call failed'), undefined) })
  }

  /** The store failed: closed policies refuse, open ones are decided by this instance's share in memory. */
  #fellBack (error: unknown, keys: string[], policies: RateLimitPolicy[], cost: number, now: number, then: (results: PolicyResult[], source: DecisionSource) => void): void {
    this.#startEpisode(error)
    if (policies.some((p) => p.onStoreFailure === 'closed')) {
      return then(policies.map((policy) => ({ policy, allowed: policy.onStoreFailure !== 'closed', remaining: 0, resetMs: 0, retryAfterMs: policy.onStoreFailure === 'closed' ? 1000 : 0 })), 'closed')
    }
    const shares = policies.map((p) => this.#share(p))
    const handover = this.#handover
    if (handover) {
      const live = this.#presence?.live ?? 1
      for (let i = 0; i < keys.length; i++) handover.seed(this.#fallback, keys[i] as string, policies[i] as RateLimitPolicy, shares[i] as RateLimitPolicy, live, now)
    }
    void this.#fallback.check({ keys, policies: shares, cost, consume: true }).then((results) => {
      if (handover && results.every((r) => r.allowed)) {
        handover.admitted(keys, policies, cost, now)
        this.#chargeDue = true
      }
      this.#noteRefusals(keys, results, cost, now)
      then(results, 'fallback')
    })
  }

  /** Keys refused for a wait are answered from memory until it is over. */
  #noteRefusals (keys: string[], results: PolicyResult[], cost: number, now: number): void {
    for (let i = 0; i < results.length; i++) {
      const r = results[i] as PolicyResult
      if (!r.allowed && r.retryAfterMs > 0 && cost <= r.policy.limit && !r.policy.shadow) this.#overUntil.set(keys[i] as string, now + r.retryAfterMs, { ttl: r.retryAfterMs })
    }
  }

  /**
   * Once the store answers again, charges it with what this instance admitted in fallback, key by key, as requests
   * of that cost made now (so that it counts them until they leave the window, up to the outage's length later than
   * they would have). A key the store has no room for left takes what room there is, which fills its window. What
   * the store could not take (it failed again) stays owed, for the next answer or heartbeat.
   */
  #chargeOwed (): void {
    const handover = this.#handover
    if (!handover || !this.#chargeDue || this.#charging) return
    this.#chargeDue = false
    if (!handover.owing) return
    this.#charging = true
    const owed = handover.take(Date.now())
    const charge = async (o: Owed): Promise<void> => {
      try {
        const [result] = await this.#ask({ keys: [o.key], policies: [o.policy], cost: o.times.length, consume: true })
        if (result && !result.allowed && result.remaining > 0) await this.#ask({ keys: [o.key], policies: [o.policy], cost: result.remaining, consume: true })
      } catch {
        handover.giveBack(o)
        this.#chargeDue = true
      }
    }
    void (async () => {
      // In slices: a long outage may leave many keys owed, and their charges share the store with live requests.
      for (let i = 0; i < owed.length; i += CHARGE_SLICE) await Promise.all(owed.slice(i, i + CHARGE_SLICE).map(charge))
    })().finally(() => { this.#charging = false })
  }

  /** One check in the shared store, under the budget (the limiter's own Redis store runs its batches under it). */
  #ask (check: StoreCheck): Promise<PolicyResult[]> {
    return this.#batched ? this.#batched.check(check) : withBudget(this.#breaker, this.#timeoutMs, () => this.#store.check(check))
  }

  /** Units left for `identity` under `policy` (the configured default policy), without consuming any. */
  async getRemainingRequests (identity: string, policy: RateLimitPolicy = this.#defaultPolicy): Promise<number> {
    const keys = this.#keys(identity, [policy])
    try {
      const check = { keys, policies: [policy], cost: 0, consume: false }
      const [result] = this.#shared ? await this.#ask(check) : await this.#store.check(check)
      return result?.remaining ?? policy.limit
    } catch {
      const [result] = await this.#fallback.check({ keys, policies: [policy], cost: 0, consume: false })
      return result?.remaining ?? policy.limit
    }
  }

  /** `instances`: the live instances this one knows of (itself included), by which a limit is divided in fallback. */
  getStats (): { breaker: string, shared: boolean, instances: number, policies: Record<string, PolicyCounters> } {
    return { breaker: this.#breaker.state, shared: this.#shared, instances: this.#presence?.live ?? 1, policies: Object.fromEntries(this.#counters) }
  }

  /**
   * What this instance may admit of a policy while the store is down: its share of the limit, rounded down so that
   * the instances together stay within it, and at least one.
   */
  #share (policy: RateLimitPolicy): RateLimitPolicy {
    const live = this.#presence?.live ?? 1
    if (live <= 1) return policy
    const limit = Math.max(1, Math.floor(policy.limit / live))
    let share = this.#shares.get(policy)
    if (share?.limit !== limit) this.#shares.set(policy, share = { ...policy, limit })
    return share
  }

  #startEpisode (cause: unknown): void {
    if (this.#episode) {
      this.#episode.decisions++
      return
    }
    this.#episode = { startedAt: Date.now(), decisions: 1 }
    const { code, message } = cause as { code?: string, message?: string }
    const instances = this.#presence?.live ?? 1
    this.#log?.warn({ cause: { code, message }, instances }, `rate-limit store failed: falling back to the in-process limiter, each limit divided by ${instances} live instance(s)`)
  }

  #endEpisode (): void {
    const episode = this.#episode as Episode
    this.#episode = undefined
    // What the fallback counted is owed to the store (and charged to it) or was seeded from it: the next outage
    // starts each key again from the store's count, which is then newer.
    if (this.#handover) this.#fallback.clear()
    this.#log?.info({ durationMs: Date.now() - episode.startedAt, decisions: episode.decisions }, 'rate-limit store answers again: fallback episode over')
  }

  #fastPath (keys: string[], policies: RateLimitPolicy[], now: number): PolicyResult[] | undefined {
    let over = false
    const results = policies.map((policy, i) => {
      const until = this.#overUntil.get(keys[i] as string) ?? 0
      if (until > now) over = true
      return { policy, allowed: until <= now, remaining: until > now ? 0 : policy.limit, resetMs: Math.max(0, until - now), retryAfterMs: Math.max(0, until - now) }
    })
    return over ? results : undefined
  }

  #decide (results: PolicyResult[], source: DecisionSource): Decision {
    if (source === 'store' && results.length === 1 && results[0]?.allowed) {
      // The common case, without the allocations of the general one.
      const only = results[0]
      this.#counter(only.policy.name).allowed++
      return { allowed: true, source, results, binding: only.policy.shadow === true ? undefined : only, shadowLimited: false }
    }
    const refusing = results.filter((r) => !r.allowed)
    const enforced = refusing.filter((r) => !r.policy.shadow)
    const allowed = enforced.length === 0
    for (const r of results) {
      const c = this.#counter(r.policy.name)
      if (source === 'fallback') c.fallback++
      if (source === 'fast-path') c.fastPath++
      if (!r.allowed && r.policy.shadow) c.shadowLimited++
      else if (!r.allowed || !allowed) c.limited++
      else c.allowed++
    }
    const binding = (allowed ? undefined : enforced.reduce<PolicyResult | undefined>((a, r) => (!a || r.retryAfterMs > a.retryAfterMs ? r : a), undefined)) ??
      results.reduce<PolicyResult | undefined>((a, r) => (r.policy.shadow === true || (a && a.remaining <= r.remaining) ? a : r), undefined)
    return { allowed, source, results, binding, shadowLimited: allowed && refusing.length > 0 }
  }

  #counter (name: string): PolicyCounters {
    let c = this.#counters.get(name)
    if (!c) this.#counters.set(name, c = { allowed: 0, limited: 0, shadowLimited: 0, fallback: 0, fastPath: 0 })
    return c
  }
}

export function createRateLimiter (redis: RedisClient | undefined, options: RateLimiterOptions = {}): RateLimiter {
  return new RateLimiter(redis, options)
}

