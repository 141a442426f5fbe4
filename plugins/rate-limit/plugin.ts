import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { optionalDependency, routeConfigOf } from '../chassis/index.js'
import { redisDecorator } from '../redis/index.js'
import { rateLimitHeaderChoices, setRateLimitHeaders, type RateLimitHeaders } from './headers.js'
import { UNPARSED_ADDRESS, cidrMatcher, clientAddressKey } from './identity.js'
import { presets, validatePolicy, RateLimitErrors, type PresetName, type RateLimitPolicy } from './policies.js'
import { RateLimiter, type Decision, type RateLimiterOptions } from './rate-limiter.js'

export type PolicyLike = RateLimitPolicy | PresetName

/** Per-route setting: `false` opts the route out of every limit; policies add to the global one. */
export type RouteRateLimit = false | PolicyLike | PolicyLike[]

declare module 'fastify' {
  interface FastifyInstance {
    rateLimiter: RateLimiter
    /** The rate-limit fields the limiter sets on the answers it counted (the `headers` option), as the OpenAPI document lists them. */
    rateLimitHeaders: RateLimitHeaders
    /** What the limiter may answer on a route of this config, as the OpenAPI document lists it. */
    rateLimitRoute: (config: { rateLimit?: RouteRateLimit }) => RouteLimits
  }
  interface FastifyContextConfig {
    rateLimit?: RouteRateLimit
  }
  interface FastifyRequest {
    rateLimit?: Decision
  }
}

/**
 * `counted`: an answer of the route may carry the limiter's fields, since a policy that is not `shadow` may apply to
 * it: one of its own, a global policy, or one a `globalFor` returns (a route limited by shadow policies alone is
 * counted for the operator's figures, but its answers carry no field). `limited`: it may be refused 429, by one of
 * those.
 * `failsClosed`: it may be refused 503 RATE_LIMIT_UNAVAILABLE, since one of those (any preset and each of
 * `globalForPolicies`, with a `globalFor`; any policy at all when `globalForPolicies` is not given) that is not
 * `shadow` has `onStoreFailure: 'closed'` and the store is one that can fail (Redis or a store given).
 */
export interface RouteLimits { counted: boolean, limited: boolean, failsClosed: boolean }

export interface RateLimitPluginOptions extends RateLimiterOptions {
  /** Applied to every route unless a route says `rateLimit: false`. @default 'default' preset */
  global?: PolicyLike | false
  /** Overrides of the presets (e.g. from RATE_LIMIT_WINDOW_MS and RATE_LIMIT_MAX_REQUESTS). */
  presets?: Partial<Record<PresetName, Partial<RateLimitPolicy>>>
  /** Who is limited: the client address (IPv6 by /64) unless given. */
  keyGenerator?: (request: FastifyRequest) => string
  /** Replaces the global policy for a request, e.g. the apiKey preset for a caller with a valid key. */
  globalFor?: (request: FastifyRequest) => PolicyLike | undefined
  /**
   * The policies of its own (not presets) `globalFor` may return, so the OpenAPI document knows whether a route may
   * answer 503 RATE_LIMIT_UNAVAILABLE. Without it, a `globalFor` may return any policy, and with a store that can
   * fail every limited route is documented as possibly answering it. One returned that is not listed, or whose
   * `onStoreFailure` or `shadow` differs from its listing, is logged once per name (RATE_LIMIT_UNDECLARED_POLICY).
   * Checked at registration: policies with names of their own, not a preset's, and only with a `globalFor`.
   * @default undefined (not known)
   */
  globalForPolicies?: RateLimitPolicy[]
  /** Trusted sources skip limiting: CIDRs or addresses, or a function. */
  allowList?: string[] | ((request: FastifyRequest) => boolean)
  /** Units a request costs. @default 1 */
  cost?: (request: FastifyRequest) => number
  /**
   * Called instead of the default answer to a refusal: 429, or 503 RATE_LIMIT_UNAVAILABLE for a `closed` policy whose
   * store failed (`decision.source === 'closed'`). One that answers itself sends its own headers; the default
   * answers carry Retry-After.
   */
  onExceeded?: (request: FastifyRequest, reply: FastifyReply, decision: Decision) => unknown
  /** `false`: counts in process even when the redis plugin is registered. Otherwise register it before this one. */
  redis?: false
  /**
   * The rate-limit fields of every answer: `both` (X-RateLimit-Limit/Remaining/Reset and the draft's
   * RateLimit-Policy and RateLimit), `x-ratelimit` or `draft` alone. Each field costs every answer. @default 'both'
   */
  headers?: RateLimitHeaders
}

/**
 * Rate limiting for every route, evaluated in `onRequest` before anything else: the global policy plus the route's
 * own, decided together in one store call. The default answer to a refusal is 429 with Retry-After and a JSON body
 * that names the policy.
 */
export const rateLimitPlugin = fp(async (app: FastifyInstance, opts: RateLimitPluginOptions) => {
  const resolvedPresets = Object.fromEntries(Object.entries(presets).map(([name, p]) => [name, validatePolicy({ ...p, ...(opts.presets?.[name as PresetName] ?? {}) })])) as Record<PresetName, RateLimitPolicy>
  const resolve = (p: PolicyLike): RateLimitPolicy => {
    if (typeof p !== 'string') return validatePolicy(p)
    const preset = Object.hasOwn(resolvedPresets, p) ? resolvedPresets[p] : undefined
    if (!preset) throw new RateLimitErrors.RATE_LIMIT_UNKNOWN_PRESET(p)
    return preset
  }
  const fields = opts.headers ?? 'both'
  if (!rateLimitHeaderChoices.includes(fields)) throw new RateLimitErrors.RATE_LIMIT_INVALID_OPTIONS(`headers must be one of ${rateLimitHeaderChoices.join(', ')}`)
  const declared = declaredPolicies(opts)
  const global = opts.global === false ? undefined : resolve(opts.global ?? 'default')
  const globalList: RateLimitPolicy[] = global ? [global] : []
  const redis = optionalDependency(app, { plugin: 'rate-limit', decorator: 'redis', provider: '@lead-chassis/plugins/redis', option: opts.redis, accepts: redisDecorator })
  const limiter = new RateLimiter(redis, { log: app.log, ...opts, defaultPolicy: global ?? resolvedPresets.default })
  // Boot waits for the Redis connection's first outcome (bounded), so the first requests are decided in Redis.
  app.addHook('onReady', () => limiter.ready())
  app.addHook('onClose', () => limiter.close())
  const allowed = Array.isArray(opts.allowList) ? cidrMatcher(opts.allowList) : undefined
  const isTrusted = typeof opts.allowList === 'function' ? opts.allowList : (req: FastifyRequest) => allowed?.(req.ip) ?? false
  // Callers whose address is not an IP address share one quota (identity.ts): said once, since a proxy that writes
  // X-Forwarded-For in another shape (an address with its port) would put every caller behind it in that quota.
  // Checked on whatever key is chosen: a keyGenerator of the caller's falls back on clientAddressKey too.
  let sharedQuotaNoted = false
  const keyGenerator = opts.keyGenerator ?? ((req: FastifyRequest) => clientAddressKey(req.ip))
  const keyOf = (req: FastifyRequest): string => {
    const key = keyGenerator(req)
    if (key === UNPARSED_ADDRESS && !sharedQuotaNoted) {
      sharedQuotaNoted = true
      app.log.warn({ code: 'RATE_LIMIT_UNPARSED_ADDRESS' }, 'a client address that is not an IP address: such callers share one rate-limit quota; check TRUST_PROXY and what the proxy writes in X-Forwarded-For')
    }
    return key
  }
  // Said once per policy name (a few names at most): the OpenAPI document was built without it, and a line per
  // request would flood the log.
  const noted = new Set<string>()
  const checkDeclared = (policy: RateLimitPolicy): void => {
    const known = declared?.get(policy.name)
    if (known !== undefined && (known.onStoreFailure ?? 'open') === (policy.onStoreFailure ?? 'open') && (known.shadow === true) === (policy.shadow === true)) return
    if (noted.has(policy.name) || noted.size >= 16) return
    noted.add(policy.name)
    app.log.warn({ code: 'RATE_LIMIT_UNDECLARED_POLICY', policy: String(policy.name).slice(0, 64) }, 'globalFor returned a policy that is not in globalForPolicies, or that fails or reports otherwise than declared: the OpenAPI document does not count it')
  }
  app.decorate('rateLimiter', limiter)
  app.decorate('rateLimitHeaders', fields)
  app.decorateRequest('rateLimit', undefined)

  const resolveSetting = (setting: RouteRateLimit): RateLimitPolicy[] | false => {
    if (setting === false) return false
    const list = Array.isArray(setting) ? setting : [setting]
    for (const p of list) {
      if (typeof p !== 'string' && (typeof p !== 'object' || p === null)) throw new RateLimitErrors.RATE_LIMIT_INVALID_POLICY('a route policy is false, a preset name, a policy or a list of them')
    }
    return list.map(resolve)
  }

  // A `globalFor` may pick any preset for a request, or a policy of its own: those declared, or any when none are.
  const basePolicies = opts.globalFor ? [...globalList, ...Object.values(resolvedPresets), ...(declared?.values() ?? [])] : globalList
  const anyPolicy = opts.globalFor !== undefined && declared === undefined
  const storeCanFail = redis !== undefined || opts.store !== undefined
  app.decorate('rateLimitRoute', (config: { rateLimit?: RouteRateLimit }): RouteLimits => {
    const own = config.rateLimit === undefined ? [] : resolveSetting(config.rateLimit)
    if (own === false) return { counted: false, limited: false, failsClosed: false }
    const enforced = [...basePolicies, ...own].filter((p) => p.shadow !== true)
    return {
      counted: enforced.length > 0 || opts.globalFor !== undefined,
      limited: enforced.length > 0 || opts.globalFor !== undefined,
      failsClosed: storeCanFail && (anyPolicy || enforced.some((p) => p.onStoreFailure === 'closed'))
    }
  })

  // A bad setting fails here, when the route is added, so `ready()` names it instead of every request answering 500.
  app.addHook('onRoute', (route) => {
    const setting = (route.config as { rateLimit?: RouteRateLimit } | undefined)?.rateLimit
    if (setting === undefined) return
    try {
      resolveSetting(setting)
    } catch (error) {
      const methods = Array.isArray(route.method) ? route.method.join(',') : route.method
      throw new RateLimitErrors.RATE_LIMIT_INVALID_ROUTE_SETTING(methods, route.url, JSON.stringify(setting), (error as Error).message)
    }
  })

  // Resolved once, on the route's first request: the hook above has validated it, and routes added before this plugin
  // count too.
  const resolvedRoutes = new WeakMap<object, RateLimitPolicy[] | false>()
  const routeSetting = (config: { rateLimit?: RouteRateLimit }): RateLimitPolicy[] | false | undefined => {
    const setting = config.rateLimit
    if (setting === undefined) return undefined
    let list = resolvedRoutes.get(config)
    if (list === undefined) {
      list = resolveSetting(setting)
      resolvedRoutes.set(config, list)
    }
    return list
  }

  const refusal = (decision: Decision): FastifyError => {
    const b = decision.binding
    if (decision.source === 'closed') return new RateLimitErrors.RATE_LIMIT_UNAVAILABLE(b?.policy.name ?? '')
    return new RateLimitErrors.RATE_LIMITED(b?.policy.name ?? '', b?.policy.limit ?? 0, Math.ceil((b?.policy.windowMs ?? 0) / 1000),
      Math.max(1, Math.ceil((b?.retryAfterMs ?? 0) / 1000)))
  }

  // A callback hook, and a decision handed back by callback: no promise per request on a path every request takes.
  app.addHook('onRequest', (request, reply, done) => {
    const own = routeSetting(routeConfigOf(request))
    if (own === false || isTrusted(request)) return done()
    const base = opts.globalFor?.(request)
    if (declared !== undefined && typeof base === 'object' && base !== null) checkDeclared(base)
    const first = base !== undefined ? resolve(base) : global
    const policies = own === undefined ? (first === global ? globalList : first ? [first] : []) : first ? [first, ...own] : own
    if (policies.length === 0) return done()
    limiter.checkWith(keyOf(request), policies, opts.cost?.(request) ?? 1, (decision) => {
      try {
        request.rateLimit = decision
        setRateLimitHeaders(reply, decision, Date.now(), fields)
        if (decision.allowed) return done()
        if (!opts.onExceeded) return done(refusal(decision))
        // A handler that answers ends the request here; one that does not leaves the default answer.
        Promise.resolve(opts.onExceeded(request, reply, decision)).then(() => { if (!reply.sent) done(refusal(decision)) }, done)
      } catch (error) {
        done(error as Error)
      }
    })
  })
}, { name: 'rate-limit', fastify: '5.x' })

/**
 * `globalForPolicies` checked once, every entry a valid policy of a name of its own that is not a preset's, keyed by
 * name; undefined when not given.
 */
function declaredPolicies (opts: RateLimitPluginOptions): Map<string, RateLimitPolicy> | undefined {
  const given = opts.globalForPolicies
  if (given === undefined) return undefined
  const invalid = (problem: string): Error => new RateLimitErrors.RATE_LIMIT_INVALID_OPTIONS(`globalForPolicies${problem}`)
  if (!Array.isArray(given)) throw invalid(' must be a list of policies')
  if (opts.globalFor === undefined) throw invalid(' is given without a globalFor to return them')
  const declared = new Map<string, RateLimitPolicy>()
  given.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalid(`[${i}] must be a policy object (a preset is counted without being listed)`)
    let policy: RateLimitPolicy
    try {
      policy = validatePolicy(entry as RateLimitPolicy)
    } catch (error) {
      throw invalid(`[${i}]: ${(error as Error).message}`)
    }
    if (Object.hasOwn(presets, policy.name)) throw invalid(`[${i}]: "${policy.name}" is a preset's name`)
    if (declared.has(policy.name)) throw invalid(`[${i}]: "${policy.name}" is listed twice`)
    declared.set(policy.name, policy)
  })
  return declared
}
