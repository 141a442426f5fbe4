import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { dropUntrustedTraceHeaders } from './caller-trace-gate.js'
import { kTrustsCallerTrace, trustsCallerTrace } from '../chassis/index.js'

// For every Fastify instance created from here on, as the preload does with OTEL_FASTIFY_DETAIL=true.
dropUntrustedTraceHeaders()

const traceHeaders = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'lead=Ann.Lee', baggage: 'email=ann%40example.com', b3: '4bf92f3577b34da6-00f067aa0ba902b7-1', 'uber-trace-id': '4bf92f3577b34da6:00f067aa0ba902b7:0:1', 'uberctx-phone': '5551234567' }

async function appWithScope (): Promise<{ app: ReturnType<typeof Fastify>, seen: () => string[] }> {
  const app = Fastify()
  let names: string[] = []
  const record = async (request: FastifyRequest): Promise<{ ok: true }> => {
    names = Object.keys(request.headers).filter((name) => name in traceHeaders)
    return { ok: true }
  }
  await app.register(async (scope) => {
    // What `./api-keys` does, registered inside a scope: its decoration is that scope's, not the root's.
    await scope.register(fp(async (inner) => { inner.decorate(kTrustsCallerTrace, (request: FastifyRequest) => request.headers['x-service-key'] === 'the-service') }))
    scope.get('/guarded', record)
  })
  app.get('/open', record)
  return { app, seen: () => names.sort() }
}

test('a caller-trust rule declared inside an encapsulated scope removes an untrusted caller\'s trace headers (W3C, B3, Jaeger) on that scope\'s routes, before @fastify/otel reads them', async (t) => {
  const { app, seen } = await appWithScope()
  t.after(() => app.close())
  assert.equal((await app.inject({ url: '/guarded', headers: traceHeaders })).statusCode, 200)
  // Before, the rule was read from the root, which had none, and every header was left for @fastify/otel to continue.
  assert.deepEqual(seen(), [])
  assert.equal((await app.inject({ url: '/guarded', headers: { ...traceHeaders, 'x-service-key': 'the-service' } })).statusCode, 200)
  assert.deepEqual(seen(), Object.keys(traceHeaders).sort(), 'a trusted caller\'s headers are kept')
})

test('a route outside any caller-trust rule keeps the caller\'s trace headers, as in an app without `./api-keys`', async (t) => {
  const { app, seen } = await appWithScope()
  t.after(() => app.close())
  assert.equal((await app.inject({ url: '/open', headers: traceHeaders })).statusCode, 200)
  assert.deepEqual(seen(), Object.keys(traceHeaders).sort())
})

test('trustsCallerTrace called the earlier way, (app, request), throws instead of reading the rule of the app\'s http.Server and trusting every caller', async (t) => {
  const { app } = await appWithScope()
  t.after(() => app.close())
  const call = trustsCallerTrace as unknown as (...args: unknown[]) => boolean
  await app.ready()
  assert.throws(() => call(app, { headers: {} }), /takes the request alone/)
  assert.throws(() => call({ server: app, headers: {} }), /takes the request alone/, 'an object without the raw request is not a request')
})
