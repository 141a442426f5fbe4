import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyRequest } from 'fastify'
import { routeConfigOf, routePatternOf } from './route-context.js'

// The hooks read the route's config and pattern from Fastify's private route context: a Fastify that stores them
// otherwise must still give what `routeOptions` says, on a matched route and on a 404.
test('the route config and pattern read on each request are routeOptions\' config and url, on a route and on a 404', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  const seen: Array<{ config: boolean, pattern: boolean, url: string | undefined }> = []
  const note = (request: FastifyRequest): void => {
    seen.push({ config: routeConfigOf(request) === request.routeOptions.config, pattern: routePatternOf(request) === request.routeOptions.url, url: routePatternOf(request) })
  }
  app.addHook('onRequest', (request, _reply, done) => { note(request); done() })
  app.get('/items/:id', { config: { requiredScope: 'items:read' } }, async (request) => ({ scope: routeConfigOf(request).requiredScope }))
  assert.deepEqual((await app.inject('/items/1')).json(), { scope: 'items:read' })
  assert.equal((await app.inject('/nowhere')).statusCode, 404)
  assert.deepEqual(seen, [{ config: true, pattern: true, url: '/items/:id' }, { config: true, pattern: true, url: undefined }])
})
