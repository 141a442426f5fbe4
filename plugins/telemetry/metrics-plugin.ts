import fp from 'fastify-plugin'
import type { FastifyContextConfig, FastifyInstance } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { routePatternOf } from '../chassis/index.js'
import { RequestMetrics } from './request-metrics.js'

export interface MetricsPluginOptions {
  /** Service name, as the `service` label. */
  service: string
  /** @default '/metrics' */
  path?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

/**
 * `GET /metrics` in Prometheus text format: requests by route pattern (never the raw URL, so the label set stays
 * bounded), a duration histogram, process metrics, and gauges read at scrape time from the pool, the cache and
 * the rate limiter when those plugins are present.
 */
export const metricsPlugin = fp(async (app: FastifyInstance, opts: MetricsPluginOptions) => {
  const registry = new Registry()
  registry.setDefaultLabels({ service: opts.service })
  collectDefaultMetrics({ register: registry })
  const requests = new RequestMetrics(registry, opts.service)

  new Gauge({
    name: 'db_pool_connections',
    help: 'Pool connections by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect () {
      if (!app.hasDecorator('db')) return
      const m = app.db.getMetrics()
      this.set({ state: 'total' }, m.totalConnections)
      this.set({ state: 'active' }, m.activeConnections)
      this.set({ state: 'idle' }, m.idleConnections)
      this.set({ state: 'waiting' }, m.waitingRequests)
    }
  })
  new Gauge({
    name: 'db_pool_max_connections', help: 'The pool\'s connection limit (saturation is active over this)', registers: [registry],
    collect () { if (app.hasDecorator('db')) this.set(app.db.getMetrics().max) }
  })
  // Lag from the replica's own clock: now() minus its last replayed commit's timestamp, 0 once it has replayed the
  // primary's position (so an idle primary does not read as lag). Seconds, because the alert speaks in time.
  new Gauge({
    name: 'db_replica_lag_seconds', help: 'Seconds each healthy read replica is behind the primary', labelNames: ['replica'] as const, registers: [registry],
    collect () {
      this.reset()
      for (const r of app.hasDecorator('db') ? app.db.getMetrics().replicas?.states ?? [] : []) if (r.healthy && r.lagSeconds !== undefined) this.set({ replica: r.name }, r.lagSeconds)
    }
  })
  new Gauge({
    name: 'db_replica_up', help: 'Read replicas by health: 1 while reads may use it, 0 while skipped', labelNames: ['replica'] as const, registers: [registry],
    collect () {
      for (const r of app.hasDecorator('db') ? app.db.getMetrics().replicas?.states ?? [] : []) this.set({ replica: r.name }, r.healthy ? 1 : 0)
    }
  })
  const readsSeen = new Map<string, number>()
  new Counter({
    name: 'db_reads_total', help: 'Reads marked as such, by where they ran (replica, primary) and why', labelNames: ['target', 'reason'] as const, registers: [registry],
    collect () {
      for (const { target, reason, count } of app.hasDecorator('db') ? app.db.getMetrics().replicas?.reads ?? [] : []) {
        const key = `${target}:${reason}`
        this.inc({ target, reason }, count - (readsSeen.get(key) ?? 0))
        readsSeen.set(key, count)
      }
    }
  })
  new Gauge({
    name: 'circuit_breaker_open',
    help: 'Breakers by dependency: 1 while open or probing (calls to it are refused), 0 when closed',
    labelNames: ['breaker'] as const,
    registers: [registry],
    collect () {
      const set = (breaker: string, state: string): void => { this.set({ breaker }, state === 'closed' ? 0 : 1) }
      const cacheBreaker = app.hasDecorator('cache') ? app.cache.getStats().redis.breaker : 'none'
      if (cacheBreaker !== 'none') set('cache_redis', cacheBreaker)
      if (app.hasDecorator('rateLimiter')) set('rate_limit_store', app.rateLimiter.getStats().breaker)
      if (app.hasDecorator('services')) for (const [name, client] of Object.entries(app.services)) set(`service:${name}`, client.breakerState)
    }
  })
  new Gauge({
    name: 'db_pool_errors', help: 'Pool errors since start', registers: [registry],
    collect () { if (app.hasDecorator('db')) this.set(app.db.getMetrics().errors) }
  })
  new Gauge({
    name: 'cache_operations', help: 'Cache operations since start, by tier and outcome', labelNames: ['tier', 'outcome'] as const, registers: [registry],
    collect () {
      if (!app.hasDecorator('cache')) return
      const s = app.cache.getStats()
      this.set({ tier: 'local', outcome: 'hit' }, s.local.hits)
      this.set({ tier: 'local', outcome: 'miss' }, s.local.misses)
      this.set({ tier: 'redis', outcome: 'hit' }, s.redis.hits)
      this.set({ tier: 'redis', outcome: 'miss' }, s.redis.misses)
      this.set({ tier: 'redis', outcome: 'error' }, s.redis.errors)
      this.set({ tier: 'loader', outcome: 'call' }, s.loader.calls)
      this.set({ tier: 'loader', outcome: 'stale' }, s.staleServes)
      this.set({ tier: 'local', outcome: 'eviction' }, s.local.evictions)
      this.set({ tier: 'redis', outcome: 'invalidation_refused' }, s.invalidations.refused)
    }
  })
  // A count, never the keys: they hold ids. Above 0 for minutes, other instances serve old values (CacheInvalidationsPending).
  new Gauge({
    name: 'cache_invalidations_pending', help: 'Cache invalidations Redis has not taken yet, retried until it does', registers: [registry],
    collect () { if (app.hasDecorator('cache')) this.set(app.cache.getStats().invalidations.pending) }
  })
  new Gauge({
    name: 'cache_local_entries', help: 'Entries and bytes in the in-process cache tier', labelNames: ['unit'] as const, registers: [registry],
    collect () {
      if (!app.hasDecorator('cache')) return
      const s = app.cache.getStats()
      this.set({ unit: 'entries' }, s.local.entries)
      this.set({ unit: 'bytes' }, s.local.bytes)
    }
  })
  new Gauge({
    name: 'rate_limit_decisions', help: 'Rate-limit decisions since start, by policy and decision', labelNames: ['policy', 'decision'] as const, registers: [registry],
    collect () {
      if (!app.hasDecorator('rateLimiter')) return
      for (const [policy, c] of Object.entries(app.rateLimiter.getStats().policies)) {
        this.set({ policy, decision: 'allowed' }, c.allowed)
        this.set({ policy, decision: 'limited' }, c.limited)
        this.set({ policy, decision: 'shadow_limited' }, c.shadowLimited)
        this.set({ policy, decision: 'fallback' }, c.fallback)
      }
    }
  })

  app.decorate('metrics', registry)
  app.addHook('onResponse', (request, reply, done) => {
    requests.record(request.method, routePatternOf(request) ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
    done()
  })
  // Scrapes are never rate limited (the rate-limit plugin reads `rateLimit: false`).
  app.get(opts.path ?? '/metrics', { config: { rateLimit: false } as FastifyContextConfig, logLevel: 'warn' }, async (_request, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}, { name: 'metrics', fastify: '5.x' })
