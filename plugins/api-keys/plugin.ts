import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { kTrustsCallerTrace, optionalDependency, routeConfigOf, type TrustsCallerTrace } from '../chassis/index.js'
import { redisDecorator } from '../redis/index.js'
import { cacheDecorator } from '../cache/index.js'
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { clientAddressKey, createRateLimiter, setRateLimitHeaders, validatePolicy } from '../rate-limit/index.js'
import { ApiKeyErrors } from './errors.js'
import { ApiKeyStore, type ApiKeyIdentity } from './key-store.js'
import { followKeyChanges } from './key-changes.js'

const SERVICE_IDENTITY: ApiKeyIdentity = Object.freeze({ id: 'internal-service', name: 'internal service', scopes: ['*'] })

declare module 'fastify' {
  interface FastifyInstance {
    apiKeys: ApiKeyStore
    /** The header a key is read from (lower case), as the OpenAPI document names it. */
    apiKeyHeader: string
    /** Key lookups are charged to the caller's address (`lookupBudget`), which may be refused them with 429. */
    apiKeyLookupBudget: boolean
  }
  interface FastifyRequest {
    /** The verified key of this request, if it carried a valid one (or the internal service identity). */
    apiKey?: ApiKeyIdentity
    apiKeyRejected?: boolean
    /** The request presented an `x-service-key` that is not the platform's (or the service has none). */
    serviceKeyRejected?: boolean
    /** True for a call from another service of the platform, authenticated by the shared service key. */
    internalService?: boolean
  }
  interface FastifyContextConfig {
    /** A route that needs a key with this scope: no key 401, a key without it 403. */
    requiredScope?: string
    /** With `requiredScope`: callers without any key are let through; a key that is presented must carry the scope. */
    anonymous?: boolean
    /** The route answers for itself: a key that is not valid is reported (`apiKeyRejected`, `serviceKeyRejected`), not refused. */
    apiKeyReportOnly?: boolean
  }
}

export interface ApiKeysPluginOptions {
  /** Header that carries the key. @default 'x-api-key' */
  header?: string
  /** The shared secret other services of the platform present in `x-service-key`; empty disables it. */
  serviceKey?: string
  /**
   * A second service key accepted in `x-service-key` (never sent), so that a rotation has no moment where a sender's
   * key is accepted by no receiver; empty accepts none.
   */
  previousServiceKey?: string
  /** Seconds a verified key stays cached (a revocation the database announces drops it at once). @default 30 */
  cacheTtl?: number
  /**
   * Listen for the key changes the database announces (revocations reach this instance within a second). Only an
   * app that never serves a request may turn it off (one built to describe its routes). @default true
   */
  followChanges?: boolean
  /**
   * What an address may cost in key lookups: each lookup (Redis or PostgreSQL) of a key this instance has not
   * verified before costs the caller's address one unit, charged before the lookup; over `limit` per `windowMs`
   * the request gets 429 without one. `false` turns it off. @default { limit: 50, windowMs: 60000 }
   */
  lookupBudget?: false | LookupBudgetOptions
  /** `false`: verified keys are not cached even when the cache plugin is registered. Otherwise register it before this one. */
  cache?: false
  /** `false`: the lookup budget counts per instance even when the redis plugin is registered. Otherwise register it before this one. */
  redis?: false
}

export interface LookupBudgetOptions {
  /** @default 50 */
  limit?: number
  /** @default 60000 */
  windowMs?: number
  /** Who pays. @default the client address, IPv6 by /64 */
  key?: (request: FastifyRequest) => string
  /** Callers never charged (e.g. allowlisted internal sources). */
  exempt?: (request: FastifyRequest) => boolean
  /** Prefix of the budget's keys in Redis (shared by every instance on `app.redis`). @default 'rl:' */
  prefix?: string
  /** Time budget of one Redis call; past it (or with Redis down) each instance counts alone. @default 100 */
  timeoutMs?: number
}

/**
 * The charge of one key lookup to the caller's budget, decided in the shared store (Redis) so that every instance
 * counts together; an address known to be over is refused from memory. Undefined when the budget is off.
 */
function lookupBudgetCharge (app: FastifyInstance, opts: false | LookupBudgetOptions | undefined, redis: FastifyInstance['redis']): ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined {
  if (opts === false) return undefined
  const policy = validatePolicy({ name: 'keyLookup', limit: opts?.limit ?? 50, windowMs: opts?.windowMs ?? 60_000, onStoreFailure: 'open' })
  const limiter = createRateLimiter(redis, { prefix: opts?.prefix ?? 'rl:', timeoutMs: opts?.timeoutMs ?? 100 })
  // Before the redis plugin closes the client (onClose hooks run in reverse order of registration): the instance
  // leaves the presence set while the client can still say so.
  app.addHook('onClose', async () => { await limiter.close() })
  const keyOf = opts?.key ?? ((request: FastifyRequest) => clientAddressKey(request.ip))
  return async (request, reply) => {
    if (opts?.exempt?.(request)) return
    const decision = await limiter.check(keyOf(request), [policy])
    if (decision.allowed) return
    // The fields the limiter sends, when one is registered (after this plugin: read here, not at registration).
    setRateLimitHeaders(reply, decision, Date.now(), app.hasDecorator('rateLimitHeaders') ? app.rateLimitHeaders : 'both')
    throw new ApiKeyErrors.API_KEY_LOOKUPS_EXCEEDED(policy.limit, Math.ceil(policy.windowMs / 1000), Math.max(1, Math.ceil((decision.binding?.retryAfterMs ?? 0) / 1000)))
  }
}

/** A route that authenticates its callers refuses a wrong service key; one that needs no credentials ignores it. */
function refusesWrongServiceKey (config: { requiredScope?: string, apiKeyReportOnly?: boolean }): boolean {
  return config.requiredScope !== undefined && config.apiKeyReportOnly !== true
}

/**
 * Verifies the key of each request in `onRequest` (so the rate limiter can key by it), and enforces it in
 * `preParsing`, after the limiter: a bad key is refused with 401 only once it has been counted against its address.
 * A key that needs a lookup is charged to its address's lookup budget first (`lookupBudget`), so invented keys
 * cost an address at most that many lookups per window; a malformed key is refused without one.
 */
export const apiKeysPlugin = fp(async (app: FastifyInstance, opts: ApiKeysPluginOptions) => {
  const header = (opts.header ?? 'x-api-key').toLowerCase()
  const cache = optionalDependency(app, { plugin: 'api-keys', decorator: 'cache', provider: '@lead-chassis/plugins/cache', option: opts.cache, accepts: cacheDecorator })
  const redis = optionalDependency(app, { plugin: 'api-keys', decorator: 'redis', provider: '@lead-chassis/plugins/redis', option: opts.lookupBudget === false ? false : opts.redis, accepts: redisDecorator })
  const store = new ApiKeyStore(app.db, cache, opts.cacheTtl ?? 30)
  // Hashing both sides gives equal lengths, which timingSafeEqual needs, without revealing the secret's length.
  app.decorate('apiKeys', store)
  app.decorate('apiKeyHeader', header)
  app.decorate('apiKeyLookupBudget', opts.lookupBudget !== false)
  if (opts.followChanges !== false) {
    const unfollow = await followKeyChanges(store, app.db, app.log)
    app.addHook('onClose', async () => unfollow())
  }
  // Declared up front so every request object keeps one shape.
  app.decorateRequest('apiKey', undefined)
  app.decorateRequest('apiKeyRejected', false)
  app.decorateRequest('serviceKeyRejected', false)
  app.decorateRequest('internalService', false)

  const beforeLookup = lookupBudgetCharge(app, opts.lookupBudget, redis)

  // Without a service key a presented one is hashed and compared all the same, against a digest nothing is known to
  // hash to, so the time of the 401 does not tell whether this service has one (or two) either. Both keys are always
  // compared, so the time does not tell which one matched.
  const digestOf = (key: string | undefined): { digest: Buffer, on: boolean } =>
    key ? { digest: createHash('sha256').update(key).digest(), on: true } : { digest: randomBytes(32), on: false }
  const serviceKeys = [digestOf(opts.serviceKey), digestOf(opts.previousServiceKey)]
  const isService = (given: string | string[]): boolean => {
    if (typeof given !== 'string') return false
    const presented = createHash('sha256').update(given).digest()
    let matched = false
    for (const key of serviceKeys) matched = (timingSafeEqual(presented, key.digest) && key.on) || matched
    return matched
  }

  // A caller's trace context is continued only from the platform's own services: any other caller's would put ids it
  // chose and free text in every span and log line of its request (caller-trace.ts). Without a service key, nobody's.
  const trustsCallerTrace: TrustsCallerTrace = (request) => {
    const presented = request.headers['x-service-key']
    return presented !== undefined && isService(presented)
  }
  app.decorate(kTrustsCallerTrace, trustsCallerTrace)

  // Callback hooks: a key verified before is answered without a promise, which a cached route would feel.
  app.addHook('onRequest', (request, reply, done) => {
    const presented = request.headers['x-service-key']
    if (presented !== undefined) {
      if (isService(presented)) {
        request.internalService = true
        request.apiKey = SERVICE_IDENTITY
        return done()
      }
      // On a route that authenticates, refused in preParsing, after the limiter has counted it against the address,
      // whether or not this service has a service key: the answer tells a caller only that the one it sent is not
      // valid, and no API key beside it is looked up. A route that needs no credentials ignores it (a probe or a
      // scraper left with a stale header after a rotation keeps working), never taking it for the service identity.
      request.serviceKeyRejected = true
      if (refusesWrongServiceKey(routeConfigOf(request))) return done()
    }
    const given = request.headers[header]
    if (given === undefined) return done()
    const known = typeof given === 'string' ? store.verifiedIdentity(given) : undefined
    if (known) {
      request.apiKey = known
      return done()
    }
    const verified = typeof given === 'string' ? store.verify(given, beforeLookup ? { beforeLookup: async () => beforeLookup(request, reply) } : {}) : Promise.resolve(undefined)
    verified.then((identity) => {
      if (identity) request.apiKey = identity
      else request.apiKeyRejected = true
      done()
    }, done)
  })

  app.addHook('preParsing', (request, _reply, _payload, done) => {
    const config = routeConfigOf(request)
    if (request.serviceKeyRejected && refusesWrongServiceKey(config)) return done(new ApiKeyErrors.INVALID_SERVICE_KEY())
    if (request.apiKeyRejected && config.apiKeyReportOnly !== true) return done(new ApiKeyErrors.INVALID_API_KEY())
    const { requiredScope: scope, anonymous } = config
    if (!scope || request.internalService) return done()
    if (!request.apiKey && anonymous) return done()
    if (!request.apiKey) return done(new ApiKeyErrors.API_KEY_REQUIRED(scope, header))
    if (!request.apiKey.scopes.includes(scope)) return done(new ApiKeyErrors.MISSING_SCOPE(scope))
    done()
  })
}, { name: 'api-keys', fastify: '5.x', dependencies: ['db-pool'] })
