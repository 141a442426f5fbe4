import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { buildService } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'
import { REFUSED_URL_PATH, refusedUrlRouting } from './refused-url.js'
import { SECURITY_HEADERS } from './security-headers.js'

const KEY = 'lck_AAAAAAAAAAAA_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { stream, lines: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

async function build (t: { after: (fn: () => Promise<void>) => void }, setup: (app: FastifyInstance) => unknown, logger?: Record<string, unknown>): Promise<FastifyInstance> {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: logger ? 'info' : 'silent' }, dotenv: false })
  const app = await buildService({ name: 'test', config, ...(logger ? { logger } : {}), routes: [setup] })
  t.after(() => app.close())
  return app
}

test('a URL the router refuses runs the hooks every request runs and is logged as completed, without its URL', async (t) => {
  const log = capture()
  const seen: string[] = []
  const app = await build(t, (a) => {
    a.addHook('onRequest', (request, _reply, done) => { seen.push(`onRequest ${request.url}`); done() })
    a.addHook('onResponse', (_request, reply, done) => { seen.push(`onResponse ${reply.statusCode}`); done() })
    a.get('/own/:id', async () => ({ ok: true }))
  }, { stream: log.stream })
  const long = 'b'.repeat(101)
  const bad = await app.inject(`/own/%zz?api_key=${KEY}`)
  const over = await app.inject(`/own/${long}`)
  assert.deepEqual([bad.statusCode, over.statusCode], [400, 414])
  assert.deepEqual(seen, [`onRequest ${REFUSED_URL_PATH}`, 'onResponse 400', `onRequest ${REFUSED_URL_PATH}`, 'onResponse 414'])
  const lines = log.lines()
  const completed = lines.filter((l) => l.msg === 'request completed')
  assert.deepEqual(completed.map((l) => [l.reqId, (l.res as { statusCode: number }).statusCode]), [[bad.headers['x-request-id'], 400], [over.headers['x-request-id'], 414]])
  assert.deepEqual(lines.filter((l) => l.msg === 'request completed').map((l) => (l.req as { url: string }).url), [REFUSED_URL_PATH, REFUSED_URL_PATH])
  const text = JSON.stringify(lines)
  assert.ok(!text.includes('%zz') && !text.includes(KEY) && !text.includes(long), text)
})

// (An over-long parameter is not refused where a wildcard route matches the path: the router takes the wildcard.)
test('a URL the router refuses is answered with its refusal by a service whose routes match any path (/*, /:slug), not by their handlers', async (t) => {
  let handled = 0
  const app = await build(t, (a) => {
    a.get('/*', async () => { handled++; return { wildcard: true } })
    a.options('/*', async () => { handled++; return { preflight: true } })
    a.get('/:slug', { schema: { params: { type: 'object', properties: { slug: { type: 'string', pattern: '^[a-z]+$' } } } } }, async () => { handled++; return { slug: true } })
    a.get('/own/:id', async () => ({ ok: true }))
  })
  const bad = await app.inject('/own/%zz')
  const preflight = await app.inject({ method: 'OPTIONS', url: '/own/%zz' })
  assert.deepEqual([bad.statusCode, bad.json().code], [400, 'BAD_URL'])
  assert.deepEqual([preflight.statusCode, preflight.json().code], [400, 'BAD_URL'])
  assert.equal(handled, 0, 'no handler of a route matching any path answered a refused URL')
  // The same routes still answer what they match.
  assert.deepEqual((await app.inject('/anything/else')).json(), { wildcard: true })
  assert.deepEqual((await app.inject('/word')).json(), { slug: true })
  assert.equal(handled, 2)
})

test('a URL the router refuses is answered with its refusal, not by the handler, by a service whose route is the bare wildcard *', async (t) => {
  let handled = 0
  const app = await build(t, (a) => {
    a.get('*', async () => { handled++; return { wildcard: true } })
  })
  const bad = await app.inject('/own/%zz')
  const head = await app.inject({ method: 'HEAD', url: '/own/%zz' })
  assert.deepEqual([bad.statusCode, bad.json().code], [400, 'BAD_URL'])
  assert.equal(head.statusCode, 400)
  assert.equal(handled, 0, 'the wildcard route answered a refused URL')
  assert.deepEqual((await app.inject('/anything')).json(), { wildcard: true })
})

test('a request for the path refused URLs are routed on, sent as such, is an ordinary 404', async (t) => {
  const app = await build(t, () => {})
  const res = await app.inject(REFUSED_URL_PATH)
  assert.equal(res.statusCode, 404)
  assert.equal(res.json().code, 'NOT_FOUND')
})

/** Sends one request over a socket to a listening app and returns its status and body. */
async function rawRequest (address: string, target: string): Promise<{ status: number, body: string }> {
  const url = new URL(address)
  const socket = createConnection({ host: url.hostname, port: Number(url.port) })
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  await once(socket, 'close')
  return { status: Number(received.slice(9, 12)), body: received.slice(received.indexOf('\r\n\r\n') + 4) }
}

test('a hostile URL at and past every router limit (megabytes of escapes, overlong UTF-8, NUL, an over-long parameter) answers a 4xx JSON error, never a 500', async (t) => {
  const app = await build(t, (a) => { a.get('/own/:id', async (request) => ({ length: (request.params as { id: string }).id.length })) })
  const cases: Array<[string, number]> = [
    [`/own/${'%zz'.repeat(300_000)}`, 400],
    [`/${'%C0%AF'.repeat(150_000)}`, 400],
    ['/own/%C0%AF', 400],
    ['/own/%E0%A4%A', 400],
    ['/own/%', 400],
    ['/own/%zz%00', 400],
    [`/own/${'a'.repeat(101)}%zz`, 400],
    [`/own/${'a'.repeat(101)}`, 414],
    [`/own/${'%61'.repeat(101)}`, 414],
    [`/own/${'a'.repeat(1_000_000)}`, 414],
    [`/own/${'%00'.repeat(100)}`, 200],
    [`/own/${'a'.repeat(100)}`, 200]
  ]
  for (const [url, status] of cases) {
    const res = await app.inject({ method: 'GET', url })
    assert.equal(res.statusCode, status, url.slice(0, 40))
    assert.match(String(res.headers['content-type']), /^application\/json/)
    if (status >= 400) assert.equal(res.json().statusCode, status)
    assert.equal(typeof res.headers['x-request-id'], 'string')
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value, name)
    assert.ok(res.body.length < 200, 'the URL is not echoed')
  }
  for (const method of ['POST', 'DELETE', 'OPTIONS', 'HEAD']) {
    assert.equal((await app.inject({ method: method as 'POST', url: '/own/%zz' })).statusCode, 400, method)
  }
  // Over a socket: the longest request line Node reads, an absolute-form target and one past Node's header limit.
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const nearLimit = await rawRequest(address, `/own/${'%zz'.repeat(5_000)}`)
  assert.deepEqual([nearLimit.status, JSON.parse(nearLimit.body).code], [400, 'BAD_URL'])
  const absolute = await rawRequest(address, 'http://x/own/%zz')
  assert.deepEqual([absolute.status, JSON.parse(absolute.body).code], [400, 'BAD_URL'])
  const past = await rawRequest(address, `/own/${'%zz'.repeat(20_000)}`)
  assert.deepEqual([past.status, JSON.parse(past.body).code], [431, 'HEADERS_TOO_LARGE'])
  assert.equal((await app.inject('/own/fine')).statusCode, 200, 'still serving')
})

test('a URL refused again after being routed on the refused path is answered 400 by the router, not routed forever', async (t) => {
  // A rewriteUrl that breaks every URL makes the refused path itself refused.
  const routing = refusedUrlRouting()
  const app = Fastify({ logger: false, rewriteUrl: () => '/%zz', routerOptions: routing.routerOptions })
  routing.attach(app)
  t.after(() => app.close())
  const res = await app.inject('/anything')
  assert.equal(res.statusCode, 400)
  assert.deepEqual(res.json(), { statusCode: 400, code: 'BAD_URL', error: 'Bad Request', message: 'The request path is not a valid percent-encoded URL' })
  assert.equal(res.headers['cache-control'], 'no-store')
  assert.equal(res.headers['x-content-type-options'], 'nosniff')
})
