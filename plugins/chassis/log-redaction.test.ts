import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import { buildService } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'
import { censorChildBindings, logRedaction } from './log-redaction.js'
import { requestLogValue } from './log-serializers.js'

function lines (): { stream: Writable, read: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { stream, read: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

const lead = { id: 'l1', firstName: 'Ann', lastName: 'Lee', first_name: 'Ann', last_name: 'Lee', email: 'ann@example.com', phone: '555-0100', state: 'CA' }
const PERSONAL = ['Ann', 'Lee', 'ann@example.com', '555-0100']

// What pino's own redaction did with the paths the services were configured with, to compare against.
const FORMER_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'req.headers["x-service-key"]',
  ...['email', 'phone', 'firstName', 'lastName', 'first_name', 'last_name'].flatMap((f) => [f, `*.${f}`, `*.*.${f}`])
]

test('a lead\'s names, email and phone in the first three levels of a logged object, in arrays, child bindings and errors, are censored as pino\'s redact paths did', () => {
  const ours = lines()
  const former = lines()
  const oursLog = pino({ level: 'info', ...logRedaction }, ours.stream)
  censorChildBindings(oursLog)
  const formerLog = pino({ level: 'info', redact: { paths: FORMER_PATHS, censor: '[redacted]' }, serializers: { req: requestLogValue } }, former.stream)
  const error = Object.assign(new Error('duplicate'), { lead, email: 'ann@example.com' })
  const objects: Array<Record<string, unknown>> = [
    lead,
    { lead },
    { body: { lead } },
    { rows: [lead, { ...lead, id: 'l2' }] },
    { batch: { rows: [lead] } },
    { err: error },
    { count: 3, route: '/api/v1/leads', nested: { a: { b: { c: 1 } } }, when: new Date(0) }
  ]
  for (const log of [oursLog, formerLog]) {
    for (const o of objects) log.info(o, 'logged')
    log.child({ lead, email: 'ann@example.com' }).child({ rows: [lead] }).info('from a child')
  }
  const strip = (l: Record<string, unknown>): Record<string, unknown> => {
    const { time: _time, ...rest } = l
    return rest
  }
  assert.deepEqual(ours.read().map(strip), former.read().map(strip))
  // Line 4 holds the lead four levels deep (batch.rows[0].email), below what either reaches.
  const text = JSON.stringify(ours.read().filter((_l, i) => i !== 4))
  for (const value of PERSONAL) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.equal(lead.email, 'ann@example.com', 'the logged object itself is left unchanged')
})

test('an object holding bytes is logged (pino\'s redact paths threw on a Buffer)', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  log.info({ upload: { bytes: Buffer.from('email'), lead } }, 'received')
  assert.equal((out.read()[0]?.upload as { lead: { email: string } }).lead.email, '[redacted]')
})

test('a logged request never carries its credentials, and an object with nothing to censor is written as given', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  const request = { method: 'GET', url: '/api/v1/leads', headers: { 'x-api-key': 'lck_secret', authorization: 'Bearer secret', cookie: 's=secret', 'x-service-key': 'secret' }, host: 'h', ip: '127.0.0.1', socket: { remotePort: 1 } }
  log.info({ req: request }, 'incoming request')
  log.info({ res: { statusCode: 200 }, responseTime: 1.5 }, 'request completed')
  const [incoming, completed] = out.read()
  assert.ok(!JSON.stringify(incoming).includes('secret'), JSON.stringify(incoming))
  // Not Fastify's request: no route matched it, and no route of this process has these words in its path.
  assert.deepEqual(incoming?.req, { method: 'GET', url: '/[REDACTED]/[REDACTED]/[REDACTED]', host: 'h', remoteAddress: '127.0.0.1', remotePort: 1 })
  assert.deepEqual(completed?.res, { statusCode: 200 })
  assert.equal(completed?.responseTime, 1.5)
})

test('a service logs no lead field a route or a plugin hands to its request logger', async (t) => {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const app = await buildService({
    name: 'test',
    config,
    logger: { stream: out.stream },
    routes: [(a) => a.get('/things', async (request) => {
      request.log.info({ lead }, 'loaded')
      request.log.child({ lead }).warn({ rows: [lead] }, 'listed')
      return { ok: true }
    })]
  })
  t.after(() => app.close())
  assert.equal((await app.inject({ url: '/things', headers: { 'x-api-key': 'lck_secret' } })).statusCode, 200)
  const logged = out.read()
  assert.deepEqual(logged.map((l) => l.msg).filter((m) => m !== 'Server listening at'), ['incoming request', 'loaded', 'listed', 'request completed'])
  const text = JSON.stringify(logged)
  for (const value of [...PERSONAL, 'lck_secret']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.match(text, /"email":"\[redacted\]"/)
})

test('an email a caller puts in a URL never reaches the request\'s log lines', async (t) => {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const app = await buildService({ name: 'test', config, logger: { stream: out.stream }, routes: [(a) => a.get('/things/:id', async () => ({ ok: true }))] })
  t.after(() => app.close())
  assert.equal((await app.inject({ url: '/things/ann.lee@example.com?email=bo%40example.org' })).statusCode, 200)
  assert.equal((await app.inject({ url: '/nowhere/ann.lee@example.com' })).statusCode, 404)
  const text = JSON.stringify(out.read())
  for (const value of ['ann.lee@example.com', 'bo%40example.org', 'bo@example.org']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  // No route declares `email`: its name is hidden as well as its value.
  assert.match(text, /\/things\/\[REDACTED\]\?\[REDACTED\]=\[REDACTED\]/)
})

test('a phone or name a caller puts in a URL (path segment, unknown query parameter, a declared filter\'s invalid value) reaches no log line', async (t) => {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const id = '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d'
  const app = await buildService({
    name: 'test',
    config,
    logger: { stream: out.stream },
    routes: [(a) => {
      a.get('/leads', { schema: { querystring: { type: 'object', properties: { status: { type: 'string', enum: ['new', 'lost'] }, limit: { type: 'integer', minimum: 1, maximum: 100 } } } } }, async () => ({ ok: true }))
      a.get('/leads/:id', { schema: { params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } } } } }, async () => ({ ok: true }))
    }]
  })
  t.after(() => app.close())
  const sent = [
    '/leads/AnnLee',
    '/leads/5551234567/calls/Ann%20Lee',
    '/leads?name=Ann+Lee&phone=%2B15551234567',
    '/leads?status=AnnLee&limit=5551234567&5551234567',
    `/leads/${id}`,
    '/leads?status=new&limit=20'
  ]
  for (const url of sent) await app.inject(url)
  const logged = out.read()
  const text = JSON.stringify(logged)
  for (const value of ['Ann', 'Lee', '5551234567', '15551234567']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  const urls = logged.filter((l) => l.msg === 'incoming request').map((l) => (l.req as { url: string }).url)
  assert.deepEqual(urls, [
    '/leads/[REDACTED]',
    '/leads/[REDACTED]/[REDACTED]/[REDACTED]',
    '/leads?[REDACTED]=[REDACTED]&[REDACTED]=[REDACTED]',
    '/leads?status=[REDACTED]&limit=[REDACTED]&[REDACTED]',
    `/leads/${id}`,
    '/leads?status=new&limit=20'
  ], 'what the route declares is still shown as sent')
})

test('a phone in the name of a query parameter or body field a route does not allow (?tel5551234567) reaches no log line, nor the validation error\'s message', async (t) => {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const closed = { type: 'object', additionalProperties: false, properties: { status: { type: 'string' } } }
  const app = await buildService({
    name: 'test',
    config,
    logger: { stream: out.stream },
    routes: [(a) => {
      a.get('/leads', { schema: { querystring: closed } }, async () => ({ ok: true }))
      a.post('/leads', { schema: { body: closed } }, async () => ({ ok: true }))
    }]
  })
  t.after(() => app.close())
  const query = await app.inject('/leads?tel5551234567=1')
  const body = await app.inject({ method: 'POST', url: '/leads', payload: { _5551234567: 'x' } })
  const extra = await app.inject('/leads?color=red')
  assert.deepEqual([query.statusCode, body.statusCode, extra.statusCode], [400, 400, 400])
  assert.equal(extra.json().message, 'querystring has a property that is not allowed', 'a name no route declares is not named')
  const text = JSON.stringify(out.read()) + query.body + body.body
  assert.ok(!text.includes('5551234567'), `a phone reached a log line or an error: ${text}`)
})
