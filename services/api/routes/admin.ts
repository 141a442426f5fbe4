import type { FastifyInstance } from 'fastify'

/** Operator views under /api/v1/admin: an admin-scoped key and the strict preset on every route. */
export async function adminRoutes (app: FastifyInstance): Promise<void> {
  const config = { requiredScope: 'admin', rateLimit: 'strict' as const }
  app.get('/cache', { config }, async () => app.cache.getStats())
  app.get('/rate-limit', { config }, async () => (app.hasDecorator('rateLimiter') ? app.rateLimiter.getStats() : { enabled: false }))
  app.get('/pool', { config }, async () => app.db.getMetrics())
  app.get('/queries', { config }, async () => ({ summary: app.queries.getSummary(), top: app.queries.getQueryStats(20), slow: app.queries.getSlowQueries(20) }))
}
