import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createConnection } from 'node:net'
import { once } from 'node:events'
import { gzipSync } from 'node:zlib'
import { request as httpRequest } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import { buildService } from './service.js'
import { takeRequestTimeout } from './client-error.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'
import { HttpError } from './errors.js'
import { setEveryResponseHeaders } from './response-headers.js'
import { SECURITY_HEADERS } from './security-headers.js'

function config (env: Record<string, string> = {}): ChassisConfig {
  return loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'silent', ...env }, dotenv: false })
}

async function build (t: { after: (fn: () => Promise<void>) => void }, setup: (app: FastifyInstance) => unknown = () => {}, env: Record<string, string> = {}) {
  const app = await buildService({ name: 'test', config: config(env), routes: [setup] })
  t.after(() => app.close())
  return app
}

test('an unknown route gets the JSON error body with 404', async (t) => {
  const app = await build(t)
  const res = await app.inject('/missing?x=1')
  assert.equal(res.statusCode, 404)
  assert.deepEqual(res.json(), { statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'Route GET /missing not found' })
})

test('a thrown HttpError keeps its status, code and message', async (t) => {
  const app = await build(t, (a) => a.get('/teapot', async () => { throw new HttpError(418, 'TEAPOT', 'short and stout') }))
  const res = await app.inject('/teapot')
  assert.equal(res.statusCode, 418)
  assert.deepEqual(res.json(), { statusCode: 418, code: 'TEAPOT', error: "I'm a Teapot", message: 'short and stout' })
})

test('an unexpected error is a 500 that leaks nothing', async (t) => {
  const app = await build(t, (a) => a.get('/boom', async () => { throw new TypeError('secret internals') }))
  const res = await app.inject('/boom')
  assert.equal(res.statusCode, 500)
  assert.deepEqual(res.json(), { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal Server Error' })
})

test('an error answered on a route whose schema for its status describes another body still carries the error body, not {}', async (t) => {
  const report = { type: 'object', properties: { status: { type: 'string' } } }
  const app = await build(t, (a) => a.get('/probe', { schema: { response: { 200: report, 503: report } } }, async () => { throw new HttpError(503, 'BUSY', 'busy') }))
  const res = await app.inject('/probe')
  assert.equal(res.statusCode, 503)
  assert.deepEqual(res.json(), { statusCode: 503, code: 'BUSY', error: 'Service Unavailable', message: 'busy' })
})

test('a 503 always carries Retry-After', async (t) => {
  const app = await build(t, (a) => a.get('/busy', async () => { throw new HttpError(503, 'BUSY', 'busy') }))
  const res = await app.inject('/busy')
  assert.equal(res.statusCode, 503)
  assert.ok(Number(res.headers['retry-after']) >= 1)
})

test('validation errors name the offending field, and a property it does not allow when some route declares that name', async (t) => {
  const app = await build(t, (a) => {
    a.post('/things', {
      schema: { body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string' }, n: { type: 'integer' } } } }
    }, async () => ({ ok: true }))
    a.get('/things', { schema: { querystring: { type: 'object', properties: { other: { type: 'string' } } } } }, async () => ({ ok: true }))
  })
  const cases: Array<[unknown, RegExp]> = [
    [{}, /body\/name is required/],
    [{ name: 'a', n: 1, other: 1 }, /body\/other is not allowed/],
    [{ name: 'a', extra: 1 }, /^body has a property that is not allowed$/],
    [{ name: 'a', n: 'x' }, /body\/n must be integer/]
  ]
  for (const [payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/things', payload: payload as object })
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().code, 'VALIDATION_ERROR')
    assert.match(res.json().message, message)
  }
})

test('a body sent in a content coding (Content-Encoding: gzip, br) is refused 415 with Accept-Encoding: identity before it is read; identity, and a request without a body, pass', async (t) => {
  let handled = 0
  const app = await build(t, (a) => {
    a.post('/echo', async (req) => { handled++; return req.body })
    a.get('/ping', async () => ({ ok: true }))
  })
  const json = JSON.stringify({ name: 'x' })
  for (const coding of ['gzip', 'GZIP', 'br', 'gzip, identity', 'x-unknown-coding']) {
    const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json', 'content-encoding': coding }, payload: gzipSync(json) })
    assert.equal(res.statusCode, 415, coding)
    assert.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE')
    assert.equal(res.headers['accept-encoding'], 'identity')
    assert.ok(!res.body.includes(coding), 'the coding is not echoed')
  }
  assert.equal(handled, 0, 'no refused body reached the handler')
  for (const coding of ['identity', 'Identity ', '', 'identity,', ' , identity']) {
    const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json', 'content-encoding': coding }, payload: json })
    assert.equal(res.statusCode, 200, `"${coding}": ${res.body}`)
    assert.deepEqual(res.json(), { name: 'x' })
  }
  const bodiless = await app.inject({ url: '/ping', headers: { 'content-encoding': 'gzip' } })
  assert.equal(bodiless.statusCode, 200)
  const empty = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '00' } })
  assert.equal(empty.headers['accept-encoding'], undefined, 'an empty body (Content-Length: 00) is no encoded body')
  assert.notEqual(empty.statusCode, 415)
  // A chunked body, over a real socket: refused before a byte of it is read.
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const chunked = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/echo', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end(gzipSync(json))
  })
  assert.equal(chunked.status, 415)
  assert.equal((JSON.parse(chunked.body) as { code: string }).code, 'UNSUPPORTED_MEDIA_TYPE')
  assert.equal(handled, 5)
})

test('malformed JSON and oversized bodies get 400 and 413 with codes', async (t) => {
  const app = await build(t, (a) => a.post('/echo', { bodyLimit: 1024 }, async (req) => req.body))
  const bad = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{oops' })
  assert.equal(bad.statusCode, 400)
  assert.equal(bad.json().code, 'INVALID_JSON')
  const big = await app.inject({ method: 'POST', url: '/echo', payload: { text: 'x'.repeat(2000) } })
  assert.equal(big.statusCode, 413)
  assert.equal(big.json().code, 'BODY_TOO_LARGE')
})

test('the request id is taken from x-request-id when a trusted proxy sends NGINX\'s ($request_id, 32 hex digits) or a uuid, and echoed', async (t) => {
  const app = await build(t, (a) => a.get('/id', async (req) => ({ id: req.id })), { TRUST_PROXY: '127.0.0.1/32' })
  for (const id of ['0123456789abcdef0123456789abcdef', '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d', '0B1C2D3E-4F50-4A6B-8C7D-9E0F1A2B3C4D']) {
    const given = await app.inject({ url: '/id', remoteAddress: '127.0.0.1', headers: { 'x-request-id': id } })
    assert.equal(given.json().id, id)
    assert.equal(given.headers['x-request-id'], id)
  }
  const forged = await app.inject({ url: '/id', remoteAddress: '127.0.0.1', headers: { 'x-request-id': 'bad id\nwith newline' } })
  assert.notEqual(forged.json().id, 'bad id\nwith newline')
  assert.match(String(forged.headers['x-request-id']), /^[0-9a-f-]{36}$/)
})

test('a name or phone sent as x-request-id (Ann.Lee.5551234567) becomes no request id: a fresh uuid replaces it', async (t) => {
  const app = await build(t, (a) => a.get('/id', async (req) => ({ id: req.id })))
  for (const sent of ['Ann.Lee.5551234567', 'AnnLee', '5551234567', 'abc-123', `${'0'.repeat(22)}Ann-5551234`]) {
    const res = await app.inject({ url: '/id', headers: { 'x-request-id': sent } })
    assert.match(res.json().id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, sent)
    assert.equal(res.headers['x-request-id'], res.json().id)
  }
})

test('a phone spelled in hex digits as x-request-id (00000000000000000000005551234567) by a caller that is not a trusted proxy becomes no request id: a fresh uuid replaces it', async (t) => {
  const chosen = '00000000000000000000005551234567'
  for (const env of [{}, { TRUST_PROXY: '10.0.0.0/8' }] as Array<Record<string, string>>) {
    const app = await build(t, (a) => a.get('/id', async (req) => ({ id: req.id })), env)
    for (const remoteAddress of ['127.0.0.1', '203.0.113.9']) {
      const res = await app.inject({ url: '/id', remoteAddress, headers: { 'x-request-id': chosen } })
      assert.match(res.json().id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, `${JSON.stringify(env)} ${remoteAddress}`)
      assert.equal(res.headers['x-request-id'], res.json().id)
    }
    // A trusted proxy's own id is still kept.
    if ('TRUST_PROXY' in env) assert.equal((await app.inject({ url: '/id', remoteAddress: '10.1.2.3', headers: { 'x-request-id': chosen } })).json().id, chosen)
  }
})

test('liveness is cheap; readiness reports each check and 503s on a required failure', async (t) => {
  const app = await build(t, (a) => {
    a.health.register({ name: 'db', check: async () => { throw new Error('down') } })
    a.health.register({ name: 'cache', required: false, check: async () => ({ hits: 1 }) })
  })
  const live = await app.inject('/health/live')
  assert.equal(live.statusCode, 200)
  const ready = await app.inject('/health/ready')
  assert.equal(ready.statusCode, 503)
  const body = ready.json()
  assert.equal(body.status, 'unavailable')
  assert.equal(body.checks.db.status, 'down')
  assert.equal(body.checks.db.error, 'down')
  assert.equal(body.checks.cache.status, 'up')
  assert.deepEqual(body.checks.cache.details, { hits: 1 })
})

test('an optional dependency that is down only degrades readiness', async (t) => {
  const app = await build(t, (a) => a.health.register({ name: 'redis', required: false, check: async () => { throw new Error('gone') } }))
  const res = await app.inject('/health/ready')
  assert.equal(res.statusCode, 200)
  assert.equal(res.json().status, 'degraded')
})

test('a hanging check is cut off by its time budget', async (t) => {
  const app = await build(t, (a) => a.health.register({ name: 'slow', check: (signal) => new Promise((_r, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))) }), { HEALTH_CHECK_TIMEOUT_MS: '50' })
  const started = Date.now()
  const res = await app.inject('/health/ready')
  assert.ok(Date.now() - started < 1000)
  assert.equal(res.statusCode, 503)
  assert.match(res.json().checks.slow.error, /timed out after 50 ms/)
})

test('readiness turns 503 once shutdown begins while liveness stays 200', async (t) => {
  const app = await build(t)
  assert.equal((await app.inject('/health/ready')).statusCode, 200)
  app.health.markShuttingDown()
  const res = await app.inject('/health/ready')
  assert.equal(res.statusCode, 503)
  assert.equal(res.json().status, 'shutting_down')
  assert.equal((await app.inject('/health/live')).statusCode, 200)
})

test('under pressure the service sheds load with 503 and Retry-After, but stays live', async (t) => {
  const app = await build(t, (a) => a.get('/work', async () => ({ ok: true })), { PRESSURE_MAX_HEAP_USED_BYTES: '1', PRESSURE_RETRY_AFTER_S: '7' })
  await app.ready()
  // under-pressure samples memory once per second.
  let res = await app.inject('/work')
  for (let i = 0; i < 30 && res.statusCode === 200; i++) {
    await sleep(100)
    res = await app.inject('/work')
  }
  assert.equal(res.statusCode, 503)
  assert.equal(res.headers['retry-after'], '7')
  assert.equal(res.json().statusCode, 503)
  assert.equal(res.json().code, 'FST_UNDER_PRESSURE')
  assert.equal((await app.inject('/health/live')).statusCode, 200)
})

test('every answer is no-store unless its route says otherwise, errors included', async (t) => {
  const app = await build(t, (a) => {
    a.get('/plain', async () => ({ ok: true }))
    a.get('/public', async (_req, reply) => { void reply.header('cache-control', 'public, max-age=60'); return { ok: true } })
  })
  assert.equal((await app.inject('/plain')).headers['cache-control'], 'no-store')
  assert.equal((await app.inject('/missing')).headers['cache-control'], 'no-store')
  assert.equal((await app.inject('/public')).headers['cache-control'], 'public, max-age=60')
})

/** Sends raw bytes to a listening app and returns everything it answers before closing. */
async function raw (app: FastifyInstance, bytes: string): Promise<string> {
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))
  const socket = createConnection({ host: url.hostname, port: Number(url.port) })
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  socket.write(bytes)
  await once(socket, 'close')
  return received
}

test('a request that arrives on a kept-alive connection once the service has begun to close is answered 503 SERVICE_CLOSING with Retry-After and the error body, not Fastify\'s bare 503', async (t) => {
  // Holds close() between its start and the server's close, where a connection kept alive may still send.
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  const app = await build(t, (a) => {
    a.addHook('preClose', () => gate)
    a.get('/things', async () => ({ ok: true }))
  })
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))
  const socket = createConnection({ host: url.hostname, port: Number(url.port) })
  // Whatever fails below, the gate opens and the socket goes, so close() and the file end.
  t.after(() => { open(); socket.destroy() })
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  const until = async (done: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 5000
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`not ${what} within 5 s`)
      await sleep(1)
    }
  }
  socket.write('GET /things HTTP/1.1\r\nHost: x\r\n\r\n')
  await until(() => received.includes('{"ok":true}'), 'answered')
  const closed = app.close()
  await until(() => app.health.shuttingDown, 'closing')
  socket.write('GET /things HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(socket, 'close', { signal: AbortSignal.timeout(5000) })
  open()
  await closed
  assert.match(received, /^HTTP\/1\.1 200 /)
  const second = received.slice(received.indexOf('HTTP/1.1', 1))
  assert.match(second, /^HTTP\/1\.1 503 /)
  const [head = '', body = ''] = second.split('\r\n\r\n')
  assert.match(head, /\r\nretry-after: 1\r\n/i)
  assert.match(head, /\r\nx-request-id: /i)
  assert.match(head, /\r\nconnection: close\r\n/i)
  assert.deepEqual(JSON.parse(body), { statusCode: 503, code: 'SERVICE_CLOSING', error: 'Service Unavailable', message: 'The service is shutting down: send the request again, to another instance' })
})

test('what the HTTP parser refuses (broken HTTP, oversized headers) gets the platform error body with a code, not Fastify\'s bare one', async (t) => {
  const app = await build(t)
  const broken = await raw(app, 'NOT HTTP AT ALL\r\n\r\n')
  assert.match(broken, /^HTTP\/1\.1 400 /)
  assert.deepEqual(JSON.parse(broken.slice(broken.indexOf('\r\n\r\n') + 4)), { statusCode: 400, code: 'MALFORMED_REQUEST', error: 'Bad Request', message: 'The request is not valid HTTP' })

  const app2 = await build(t)
  const huge = await raw(app2, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`)
  assert.match(huge, /^HTTP\/1\.1 431 /)
  assert.equal(JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4)).code, 'HEADERS_TOO_LARGE')
})

/** A POST whose body (1,000 bytes declared) arrives a byte every 100 ms: what it received, and when it closed. */
async function dripUpload (address: string, path: string): Promise<{ received: string, closedAfterMs: number }> {
  const { port } = new URL(address)
  const socket = createConnection({ host: '127.0.0.1', port: Number(port) })
  await once(socket, 'connect')
  const started = performance.now()
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n`)
  const drip = setInterval(() => { if (!socket.destroyed) socket.write('a') }, 100)
  const giveUp = setTimeout(() => socket.destroy(), 6000)
  await new Promise((resolve) => socket.once('close', resolve))
  clearInterval(drip)
  clearTimeout(giveUp)
  return { received, closedAfterMs: performance.now() - started }
}

test('a route that takes its request\'s timeout (takeRequestTimeout) is told when Node\'s deadline passes; if it never answers, the connection gets 408 a second later', async (t) => {
  let told = 0
  const app = await build(t, (a) => {
    // The body as a stream, as an upload route reads it: the handler runs while it still arrives.
    a.addContentTypeParser('application/octet-stream', (_request, payload, done) => { done(null, payload) })
    // A route that took the timeout and then failed to use it: it answers nothing.
    a.post('/upload', async (request, reply) => {
      takeRequestTimeout(request.raw, reply.raw, () => { told++ })
      await new Promise(() => {})
    })
  }, { REQUEST_TIMEOUT_MS: '1000' })
  const { received, closedAfterMs } = await dripUpload(await app.listen({ host: '127.0.0.1', port: 0 }), '/upload')
  assert.equal(told, 1, 'the route was told once')
  assert.match(received, /^HTTP\/1\.1 408 /)
  assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { statusCode: 408, code: 'REQUEST_TIMEOUT', error: 'Request Timeout', message: 'The request did not arrive within 1000 ms' })
  // Node's deadline (1 to 2 s: checked once a second), then the route's second.
  assert.ok(closedAfterMs >= 1900 && closedAfterMs < 4500, `closed after ${closedAfterMs.toFixed(0)} ms`)
})

test('a route that took its request\'s timeout and answers it on a kept-alive connection answers with Connection: close, gets no second answer after its own, and the connection closes instead of reading the rest of the late body', async (t) => {
  const app = await build(t, (a) => {
    a.addContentTypeParser('application/octet-stream', (_request, payload, done) => { done(null, payload) })
    a.post('/upload', async (request, reply) => {
      await new Promise<void>((resolve) => { takeRequestTimeout(request.raw, reply.raw, resolve) })
      return { stopped: true }
    })
  }, { REQUEST_TIMEOUT_MS: '1000' })
  const { received, closedAfterMs } = await dripUpload(await app.listen({ host: '127.0.0.1', port: 0 }), '/upload')
  assert.match(received, /^HTTP\/1\.1 200 /)
  // Before, the plain 408 followed a second later, read by the client as the answer to its next request.
  assert.equal(received.match(/HTTP\/1\.1 /g)?.length, 1, `one answer on the connection: ${received}`)
  assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { stopped: true })
  // Said in the answer, so that a client does not send its next request on a connection about to close.
  assert.match(received.slice(0, received.indexOf('\r\n\r\n') + 2), /\r\nconnection: close\r\n/i)
  assert.ok(closedAfterMs < 4500, `closed after ${closedAfterMs.toFixed(0)} ms, not held open by the drip`)
})

test('a request pipelined behind one that took its timeout, and that times out itself, is not handed to that route: it gets the plain 408 at once', async (t) => {
  let told = 0
  const app = await build(t, (a) => {
    a.addContentTypeParser('application/octet-stream', (_request, payload, done) => { done(null, payload) })
    // The first request's body arrives whole; its route keeps its answer (and its hold on the timeout) for 4 s.
    a.post('/upload', async (request, reply) => {
      takeRequestTimeout(request.raw, reply.raw, () => { told++ })
      for await (const _chunk of request.body as AsyncIterable<Buffer>) { /* read it all */ }
      await sleep(4000)
      return { done: true }
    })
    // The second's route reads its body as it comes, and leaves the timeout to Node.
    a.post('/other', async (request) => {
      for await (const _chunk of request.body as AsyncIterable<Buffer>) { /* read it all */ }
      return { done: true }
    })
  }, { REQUEST_TIMEOUT_MS: '1000' })
  const { port } = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))
  const socket = createConnection({ host: '127.0.0.1', port: Number(port) })
  await once(socket, 'connect')
  const started = performance.now()
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc')
  // The second, behind it on the same connection, declares 1,000 bytes and sends a byte every 100 ms.
  socket.write('POST /other HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n')
  const drip = setInterval(() => { if (!socket.destroyed) socket.write('a') }, 100)
  const giveUp = setTimeout(() => socket.destroy(), 8000)
  await new Promise((resolve) => socket.once('close', resolve))
  clearInterval(drip)
  clearTimeout(giveUp)
  const closedAfterMs = performance.now() - started
  assert.equal(told, 0, 'the first request\'s route was not told of the second\'s timeout')
  assert.match(received, /HTTP\/1\.1 408 /)
  assert.ok(closedAfterMs < 3000, `the second request's timeout closed the connection after ${closedAfterMs.toFixed(0)} ms`)
})

test('a path with a broken escape or an over-long parameter gets the platform error body, no-store and no echo of the URL or its key', async (t) => {
  const app = await build(t, (a) => { a.get('/things/:id', async () => ({ ok: true })) })
  const key = 'lck_AAAAAAAAAAAA_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'
  const bad = await app.inject(`/things/%E0%A4%A?api_key=${key}`)
  assert.equal(bad.statusCode, 400)
  assert.deepEqual(bad.json(), { statusCode: 400, code: 'BAD_URL', error: 'Bad Request', message: 'The request path is not a valid percent-encoded URL' })
  const long = await app.inject(`/things/${'a'.repeat(101)}?api_key=${key}`)
  assert.equal(long.statusCode, 414)
  assert.equal(long.json().code, 'PATH_SEGMENT_TOO_LONG')
  for (const res of [bad, long]) {
    assert.ok(!res.body.includes(key), res.body)
    assert.equal(res.headers['cache-control'], 'no-store')
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    assert.equal(typeof res.headers['x-request-id'], 'string')
  }
  assert.equal((await app.inject(`/things/${'a'.repeat(100)}`)).statusCode, 200)
})

test('every answer carries all the security headers, no-store and its request id: a route\'s, a 404, a 400, an HttpError and a 500', async (t) => {
  const app = await build(t, (a) => {
    a.get('/plain', async () => ({ ok: true }))
    a.get('/refused', async () => { throw new HttpError(409, 'TAKEN', 'taken') })
    a.get('/broken', async () => { throw new Error('boom') })
    a.get('/typed', { schema: { querystring: { type: 'object', properties: { n: { type: 'integer' } } } } }, async () => ({ ok: true }))
  })
  const answers = await Promise.all(['/plain', '/missing', '/typed?n=x', '/refused', '/broken'].map(async (url) => app.inject(url)))
  assert.deepEqual(answers.map((r) => r.statusCode), [200, 404, 400, 409, 500])
  const ids = new Set<string>()
  for (const res of answers) {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value, `${res.statusCode}: ${name}`)
    assert.equal(res.headers['cache-control'], 'no-store')
    ids.add(String(res.headers['x-request-id']))
  }
  assert.equal(ids.size, answers.length, 'each answer has its own request id')
})

test('a header an earlier onRequest hook set is kept beside the ones every answer carries', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  app.addHook('onRequest', (_request, reply, done) => { void reply.header('x-earlier', 'kept'); done() })
  app.addHook('onRequest', (request, reply, done) => { setEveryResponseHeaders(request, reply); done() })
  app.get('/', async () => ({ ok: true }))
  const res = await app.inject('/')
  assert.equal(res.headers['x-earlier'], 'kept')
  assert.equal(res.headers['x-frame-options'], SECURITY_HEADERS['x-frame-options'])
  assert.equal(typeof res.headers['x-request-id'], 'string')
})

test('a JSON body is not type-coerced: true, false, null and a one-element array are refused where a string or integer is declared, while the query string and params still are', async (t) => {
  const app = await build(t, (a) => a.post('/things/:n', {
    schema: {
      params: { type: 'object', properties: { n: { type: 'integer' } } },
      querystring: { type: 'object', properties: { limit: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } } },
      body: { type: 'object', properties: { name: { type: 'string' }, score: { type: 'integer' } } }
    }
  }, async (request) => ({ params: request.params, query: request.query, body: request.body })))
  for (const body of [{ name: true }, { name: false }, { name: 5 }, { name: ['x'] }, { score: null }, { score: false }, { score: '5' }, { score: [5] }]) {
    const res = await app.inject({ method: 'POST', url: '/things/1', payload: body })
    assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`)
    assert.equal(res.json().code, 'VALIDATION_ERROR')
  }
  const res = await app.inject({ method: 'POST', url: '/things/7?limit=5&tags=a', payload: { name: 'x', score: 3 } })
  assert.equal(res.statusCode, 200, res.body)
  assert.deepEqual(res.json(), { params: { n: 7 }, query: { limit: 5, tags: ['a'] }, body: { name: 'x', score: 3 } })
})
