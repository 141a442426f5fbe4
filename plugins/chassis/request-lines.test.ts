import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import { connect } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildService } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'

// Tells a test that /slow's handler is running: its request has reached the route.
const handlerStarted = new EventEmitter()

/** A service with a route that answers, one that logs a line of its own and one that fails, logging into `read`. */
async function service (t: { after: (fn: () => unknown) => void }, env: Record<string, string>): Promise<{ app: Awaited<ReturnType<typeof buildService>>, read: () => Array<Record<string, unknown>> }> {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info', ...env }, dotenv: false })
  const app = await buildService({
    name: 'test',
    config,
    logger: { stream },
    routes: [(a) => {
      a.get('/things', async () => ({ ok: true }))
      a.get('/noted', async (request) => { request.log.info({ step: 'loaded' }, 'noted'); request.log.info('plain'); return { ok: true } })
      a.get('/failing', async () => { throw new Error('the store is gone') })
      a.get('/slow', async () => { handlerStarted.emit('started'); await sleep(300); return { ok: true } })
      // A body sent in pieces, the last long after the first.
      a.get('/stream', async (_request, reply) => reply.type('text/plain').send(Readable.from((async function * () { yield 'a'.repeat(1024); await sleep(300); yield 'b' })())))
      a.get('/debugging', async (request) => { request.log.level = 'debug'; request.log.debug('looked closer'); const log = request.log as unknown as { isLevelEnabled: (level: string) => boolean, bindings: () => unknown }; return { debug: log.isLevelEnabled('debug'), bindings: log.bindings() } })
      a.post('/echoed', async (request) => { request.log.info(request.body as Record<string, unknown>, 'body'); request.log.info({ reqId: undefined }, 'unset'); return { ok: true } })
    }]
  })
  t.after(() => app.close())
  const read = (): Array<Record<string, unknown>> => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
  return { app, read }
}

const requestLines = (logged: Array<Record<string, unknown>>): Array<Record<string, unknown>> =>
  logged.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed' || l.msg === 'request errored')

test('by default a request answered at info writes one line, when it is answered, with its request, status and time', async (t) => {
  const { app, read } = await service(t, {})
  const answer = await app.inject('/things?limit=5')
  assert.equal(answer.statusCode, 200)
  const lines = requestLines(read())
  assert.equal(lines.length, 1, JSON.stringify(lines))
  const [line] = lines
  assert.equal(line?.msg, 'request completed')
  assert.equal(line?.level, 30)
  assert.equal(line?.reqId, answer.headers['x-request-id'])
  assert.deepEqual(line?.req, { method: 'GET', url: '/things?[REDACTED]=[REDACTED]', host: 'localhost:80', remoteAddress: '127.0.0.1' })
  assert.deepEqual(line?.res, { statusCode: 200 })
  assert.equal(typeof line?.responseTime, 'number')
})

test('LOG_REQUESTS=received-and-answered writes a line when a request arrives, with the request, and one when it is answered, with its status', async (t) => {
  const { app, read } = await service(t, { LOG_REQUESTS: 'received-and-answered' })
  const answer = await app.inject('/things')
  const lines = requestLines(read())
  assert.deepEqual(lines.map((l) => [l.msg, l.reqId]), [['incoming request', answer.headers['x-request-id']], ['request completed', answer.headers['x-request-id']]])
  assert.deepEqual(lines[0]?.req, { method: 'GET', url: '/things', host: 'localhost:80', remoteAddress: '127.0.0.1' })
  assert.deepEqual(lines[1]?.res, { statusCode: 200 })
  assert.equal(lines[1]?.req, undefined)
})

test('LOG_REQUESTS=off writes no request line, and a request that fails is still logged with its error', async (t) => {
  const { app, read } = await service(t, { LOG_REQUESTS: 'off' })
  assert.equal((await app.inject('/things')).statusCode, 200)
  const failed = await app.inject('/failing')
  assert.equal(failed.statusCode, 500)
  const logged = read()
  assert.deepEqual(requestLines(logged), [])
  const error = logged.find((l) => l.level === 50)
  assert.equal(error?.reqId, failed.headers['x-request-id'])
  assert.match(JSON.stringify(error?.err), /the store is gone/)
})

test('a request\'s own lines carry its request id, and LOG_REQUESTS takes no other value', async (t) => {
  const { app, read } = await service(t, {})
  const answer = await app.inject('/noted')
  const lines = read().filter((l) => l.reqId === answer.headers['x-request-id'])
  assert.deepEqual(lines.map((l) => l.msg), ['noted', 'plain', 'request completed'])
  assert.equal(lines[0]?.step, 'loaded')
  assert.throws(() => loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_REQUESTS: 'both' }, dotenv: false }), /LOG_REQUESTS must be one of answered, received-and-answered, off/)
})

test('a request that logs at info makes no pino child logger of its own: its lines go through the service\'s logger with its bindings', async (t) => {
  const { app, read } = await service(t, { LOG_REQUESTS: 'received-and-answered' })
  await app.ready()
  let children = 0
  const child = app.log.child.bind(app.log)
  app.log.child = ((...args: Parameters<typeof child>) => { children++; return child(...args) }) as typeof app.log.child
  for (let i = 0; i < 10; i++) assert.equal((await app.inject(i % 2 === 0 ? '/things' : '/noted')).statusCode, 200)
  assert.equal(children, 0, 'a child logger was made per request')
  assert.equal(requestLines(read()).length, 20)
})

/**
 * Sends `GET path` on a raw connection, hangs up once `moment` (given the socket) has come, and gives the line then
 * logged for a URL starting with `path` (waiting up to a second for it).
 */
async function hangUp (app: Awaited<ReturnType<typeof buildService>>, read: () => Array<Record<string, unknown>>, path: string, moment: (socket: ReturnType<typeof connect>) => Promise<unknown>): Promise<Record<string, unknown> | undefined> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`))
  socket.on('error', () => {})
  const hangUpNow = moment(socket)
  socket.resume()
  await hangUpNow
  socket.destroy()
  const bare = path.split('?')[0] ?? path
  for (let i = 0; i < 50; i++) {
    const line = read().find((l) => (l.req as { url?: string } | undefined)?.url?.startsWith(bare) === true)
    if (line) return line
    await sleep(20)
  }
  return undefined
}

test('a request whose client hangs up before it is answered still writes its line, with its request', async (t) => {
  const { app, read } = await service(t, {})
  const line = await hangUp(app, read, '/slow?name=AnnLee', async () => await once(handlerStarted, 'started'))
  assert.equal(line?.msg, 'request aborted', JSON.stringify(read()))
  assert.deepEqual(line?.req, { method: 'GET', url: '/slow?[REDACTED]=[REDACTED]', host: 'localhost', remoteAddress: '127.0.0.1', remotePort: (line?.req as { remotePort?: unknown }).remotePort })
  assert.equal(typeof (line?.req as { remotePort?: unknown }).remotePort, 'number', 'the address it came from, though its socket is gone')
  assert.equal(typeof line?.reqId, 'string')
})

test('a response its client hangs up on halfway still writes the request\'s line, with its request', async (t) => {
  const { app, read } = await service(t, {})
  // Once the answer's first bytes have arrived: its headers and first piece are sent, its last is 300 ms away.
  const line = await hangUp(app, read, '/stream', async (socket) => await once(socket, 'data'))
  assert.ok(line, JSON.stringify(read()))
  assert.deepEqual([line.msg, (line.res as { statusCode: number }).statusCode], ['stream closed prematurely', 200])
})

test('a request logger answers as pino\'s child would: its level set to debug lets the request log at debug, isLevelEnabled and bindings answer', async (t) => {
  const { app, read } = await service(t, {})
  const answer = await app.inject('/debugging')
  assert.equal(answer.statusCode, 200, answer.body)
  assert.deepEqual(answer.json(), { debug: true, bindings: { service: 'test', reqId: answer.headers['x-request-id'] } })
  assert.ok(read().some((l) => l.msg === 'looked closer' && l.reqId === answer.headers['x-request-id']), JSON.stringify(read()))
})

test('an object a request logs cannot replace or remove the request\'s reqId', async (t) => {
  const { app, read } = await service(t, {})
  const answer = await app.inject({ method: 'POST', url: '/echoed', payload: { reqId: 'spoofed', step: 1 } })
  assert.equal(answer.statusCode, 200)
  const lines = read().filter((l) => l.msg === 'body' || l.msg === 'unset')
  assert.deepEqual(lines.map((l) => [l.msg, l.reqId]), [['body', answer.headers['x-request-id']], ['unset', answer.headers['x-request-id']]])
  assert.equal(lines[0]?.step, 1)
})
