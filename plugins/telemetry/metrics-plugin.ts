import fp from 'fastify-plugin'
import type { FastifyContextConfig, FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

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
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests by method, route pattern and status', labelNames: ['method', 'route', 'status'] as const, registers: [registry] })
  const duration = new Histogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration by route pattern', labelNames: ['method', 'route'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] })

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
    }
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
  // Labelled children are looked up once per method, route and status: hashing label sets on every request was
  // a tenth of a cached route's throughput.
  const counters = new Map<string, Counter.Internal>()
  const timers = new Map<string, Histogram.Internal<'method' | 'route'>>()
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const timerKey = `${request.method} ${route}`
    const counterKey = `${timerKey} ${reply.statusCode}`
    let counter = counters.get(counterKey)
    if (!counter) counters.set(counterKey, counter = requests.labels(request.method, route, String(reply.statusCode)))
    let timer = timers.get(timerKey)
    if (!timer) timers.set(timerKey, timer = duration.labels(request.method, route))
    counter.inc()
    timer.observe(reply.elapsedTime / 1000)
    done()
  })
  // Scrapes are never rate limited (the rate-limit plugin reads `rateLimit: false`).
  app.get(opts.path ?? '/metrics', { config: { rateLimit: false } as FastifyContextConfig, logLevel: 'warn' }, async (_request, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}, { name: 'metrics', fastify: '5.x' })
