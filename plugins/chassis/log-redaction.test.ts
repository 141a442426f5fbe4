import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { Writable } from 'node:stream'
import type { RouteHandlerMethod } from 'fastify'
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

test('a lead\'s names, email and phone in a logged object, in arrays, child bindings and errors, are censored where pino\'s redact paths did, and deeper', () => {
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
  // Line 4 holds the lead four levels deep (batch.rows[0].email), below what the paths reached: only there do the two differ.
  const oursLines = ours.read()
  const formerLines = former.read()
  assert.deepEqual(oursLines.filter((_l, i) => i !== 4).map(strip), formerLines.filter((_l, i) => i !== 4).map(strip))
  assert.ok(JSON.stringify(formerLines[4]).includes('ann@example.com'), 'the paths left the fourth level as it was')
  const text = JSON.stringify(oursLines)
  for (const value of PERSONAL) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.equal(lead.email, 'ann@example.com', 'the logged object itself is left unchanged')
})

test('a lead nested deeper than three levels (a page of leads in a result, a property of an error) is censored at any depth; an object too deep or too large to check is cut short, not written unchecked', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  censorChildBindings(log)
  log.info({ result: { page: { items: [lead] } } }, 'page')
  log.error({ err: Object.assign(new Error('update failed'), { detail: { row: { before: lead } } }) }, 'failed')
  log.child({ job: { batch: { rows: [lead] } } }).info('child')
  let deep: Record<string, unknown> = { lead }
  for (let i = 0; i < 40; i++) deep = { deeper: deep }
  log.info({ deep }, 'too deep')
  const wide = { rows: Array.from({ length: 20_000 }, (_v, i) => ({ id: i, nested: { lead } })) }
  log.info(wide, 'too large')
  const [page, failed, child, tooDeep, tooLarge] = out.read()
  const text = JSON.stringify(out.read())
  for (const value of PERSONAL) assert.ok(!text.includes(value), `${value} reached a log line`)
  assert.deepEqual((page?.result as { page: { items: Array<Record<string, unknown>> } }).page.items[0], { ...lead, firstName: '[redacted]', lastName: '[redacted]', first_name: '[redacted]', last_name: '[redacted]', email: '[redacted]', phone: '[redacted]' })
  assert.equal(((failed?.err as { detail: { row: { before: { email: string } } } }).detail.row.before.email), '[redacted]')
  assert.equal(((child?.job as { batch: { rows: Array<{ state: string, email: string }> } }).batch.rows[0]?.email), '[redacted]')
  assert.equal(((child?.job as { batch: { rows: Array<{ state: string }> } }).batch.rows[0]?.state), 'CA', 'what is not personal is written')
  // 42 levels: the objects of the first 32 are walked, and the one at level 33 is written as the censor.
  let level: unknown = tooDeep?.deep
  let depth = 1
  while (level !== null && typeof level === 'object') { level = (level as { deeper: unknown }).deeper; depth++ }
  assert.equal(level, '[redacted]')
  assert.equal(depth, 33)
  // 20,000 rows of a dozen properties each, past the line's 10,000: the object being walked then is censored whole.
  assert.ok(tooLarge?.rows === '[redacted]', 'the rows were cut short')
  // Below the budget, a large object is walked whole.
  log.info({ rows: Array.from({ length: 500 }, (_v, i) => ({ id: i, nested: { lead } })) }, 'large')
  const large = out.read().at(-1)?.rows as Array<{ id: number, nested: { lead: Record<string, unknown> } }>
  assert.equal(large.length, 500)
  assert.deepEqual(large.at(-1), { id: 499, nested: { lead: { id: 'l1', firstName: '[redacted]', lastName: '[redacted]', first_name: '[redacted]', last_name: '[redacted]', email: '[redacted]', phone: '[redacted]', state: 'CA' } } })
})

test('a circular object is logged without hanging: the reference back is written as [Circular], and what it holds is censored', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  const node: Record<string, unknown> = { name: 'node', lead: { ...lead } }
  node.self = node
  ;(node.lead as Record<string, unknown>).owner = node
  log.info({ node }, 'cyclic')
  const [line] = out.read()
  assert.deepEqual(line?.node, { name: 'node', lead: { ...lead, firstName: '[redacted]', lastName: '[redacted]', first_name: '[redacted]', last_name: '[redacted]', email: '[redacted]', phone: '[redacted]', owner: '[Circular]' }, self: '[Circular]' })
})

test('a value whose walk throws (a getter, a revoked Proxy) is written as [redacted]: the line is written and the log call does not throw', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  const throwing = Object.defineProperty({}, 'x', { enumerable: true, get () { throw new Error('boom') } })
  const frozenProto = Object.create(Object.freeze({ name: 'proto' }), { name: { value: 'own', enumerable: true }, email: { value: 'ann@example.com', enumerable: true } }) as object
  assert.doesNotThrow(() => { log.info({ a: { b: { c: { d: proxy } } } }, 'revoked') })
  assert.doesNotThrow(() => { log.info({ a: { b: { c: { d: throwing } } } }, 'getter') })
  assert.doesNotThrow(() => { log.info({ a: { b: { frozenProto } } }, 'frozen prototype') })
  const [revoked, getter, frozen] = out.read()
  assert.equal((revoked?.a as { b: { c: { d: unknown } } }).b.c.d, '[redacted]')
  assert.equal((getter?.a as { b: { c: { d: unknown } } }).b.c.d, '[redacted]')
  assert.deepEqual((frozen?.a as { b: { frozenProto: unknown } }).b.frozenProto, { name: 'own', email: '[redacted]' })
})

test('what a value\'s toJSON gives, a message that is an object, and bindings set later are censored too', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  censorChildBindings(log)
  class Person {
    readonly #email: string
    constructor (email: string) { this.#email = email }
    toJSON (): Record<string, unknown> { return { id: 1, email: this.#email } }
  }
  log.info({ person: new Person('ann@example.com'), when: new Date(0), at: new URL('https://example.com/a') }, 'toJSON')
  log.info('interpolated %j', new Person('ann@example.com'))
  log.info({ a: 1 }, { email: 'ann@example.com' } as unknown as string)
  const child = log.child({ job: 'import' })
  child.setBindings({ row: { email: 'ann@example.com' } })
  child.info('bound later')
  const text = JSON.stringify(out.read())
  assert.ok(!text.includes('ann@example.com'), text)
  const [shown] = out.read()
  assert.deepEqual(shown?.person, { id: 1, email: '[redacted]' })
  assert.equal(shown?.when, '1970-01-01T00:00:00.000Z', 'a Date is written as it was')
  assert.equal(shown?.at, 'https://example.com/a')
})

test('a lead a message interpolates (%j, %o, %O) is censored as a logged object is, through a request\'s logger too', async (t) => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  log.info('created %j', lead)
  log.info({ id: 'l1' }, 'patched %o from %O', { after: lead }, [lead])
  log.warn('%s then %j', 'text', { rows: [{ lead }] })
  const text = JSON.stringify(out.read())
  for (const value of PERSONAL) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.match(String(out.read()[0]?.msg), /^created \{"id":"l1","firstName":"\[redacted\]"/)
  assert.equal(lead.email, 'ann@example.com', 'the interpolated object itself is left unchanged')

  const { app, read } = await headerService(t, {}, async (request) => {
    request.log.info('lead %j', lead)
    request.log.info({ step: 'saved' }, 'lead %O', { lead })
    return { ok: true }
  })
  assert.equal((await app.inject({ url: '/things' })).statusCode, 200)
  const served = JSON.stringify(read())
  assert.ok(served.includes('lead {') && served.includes('saved'), `the handler's lines were written: ${served}`)
  for (const value of PERSONAL) assert.ok(!served.includes(value), `${value} reached a request's line: ${served}`)
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
  assert.deepEqual(incoming?.req, { method: 'GET', url: '/[REDACTED]/[REDACTED]/[REDACTED]', host: '[REDACTED]', remoteAddress: '127.0.0.1', remotePort: 1 })
  assert.deepEqual(completed?.res, { statusCode: 200 })
  assert.equal(completed?.responseTime, 1.5)
})

test('a handler that logs its request\'s headers writes no credential: authorization, cookie, x-api-key and x-service-key are censored in a logged object', async (t) => {
  const { app, read } = await headerService(t, {}, async (request) => {
    request.log.info({ headers: request.headers }, 'headers')
    request.log.child({ upstream: { headers: request.headers } }).info({ call: { headers: request.headers } }, 'nested')
    return { ok: true }
  })
  const secrets = { authorization: 'Bearer s3cret-bearer', cookie: 'sid=s3cret-cookie', 'x-api-key': 'lck_s3cretkey', 'x-service-key': 's3cret-service' }
  assert.equal((await app.inject({ url: '/things', headers: secrets })).statusCode, 200)
  const logged = read()
  const text = JSON.stringify(logged)
  for (const value of Object.values(secrets)) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  const headers = logged.find((l) => l.msg === 'headers')?.headers as Record<string, unknown>
  assert.deepEqual([headers.authorization, headers.cookie, headers['x-api-key'], headers['x-service-key'], headers.host], ['[redacted]', '[redacted]', '[redacted]', '[redacted]', 'localhost:80'])
})

test('a credential header of another name (a custom API key header, x-auth-token, proxy-authorization), and a password or token a handler logs in its own object, are censored; a cache key and other headers are not', async (t) => {
  const { app, read } = await headerService(t, {}, async (request) => {
    request.log.info({ headers: request.headers, key: 'http:leads:list', cache_key_count: 3 }, 'headers')
    request.log.info({ login: { user: 'u1', password: 's3cret-login' }, oauth: { accessToken: 's3cret-access', clientSecret: 's3cret-client-own' }, upstream: { Authorization: 'Bearer s3cret-upper', serviceKey: 's3cret-service-own' } }, 'own')
    return { ok: true }
  })
  const secrets = { 'x-lead-key': 'lck_s3cret-custom', 'x-apikey': 'lck_s3cret-apikey', 'x-auth-token': 's3cret-token', 'proxy-authorization': 'Basic s3cret-proxy', 'x-client_secret': 's3cret-client', 'X-Upstream-Password': 's3cret-password', 'x-upstream-auth': 's3cret-auth' }
  assert.equal((await app.inject({ url: '/things', headers: { ...secrets, 'x-request-id': 'rid-1', 'surrogate-control': 'max-age=5' } })).statusCode, 200)
  const logged = read()
  const text = JSON.stringify(logged)
  for (const value of [...Object.values(secrets), 's3cret-login', 's3cret-access', 's3cret-client-own', 's3cret-upper', 's3cret-service-own']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.match(text, /"user":"u1"/, 'what is no credential beside them is written')
  const line = logged.find((l) => l.msg === 'headers') as Record<string, unknown>
  const headers = line.headers as Record<string, unknown>
  for (const name of Object.keys(secrets)) assert.equal(headers[name.toLowerCase()], '[redacted]', name)
  assert.equal(headers['surrogate-control'], 'max-age=5', 'a header that is no credential is written')
  assert.deepEqual([line.key, line.cache_key_count], ['http:leads:list', 3], 'a cache key, and a count named after keys, are written')
})

test('a service that gives the logger formatters, serializers, hooks or a mixin strategy of its own is refused at build (they replaced the redaction, and a lead\'s email was logged as given)', async () => {
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  for (const own of [{ serializers: { order: (o: { id: string }) => ({ orderId: o.id }) } }, { formatters: { log: (o: object) => o } }, { hooks: {} }, { mixinMergeStrategy: () => ({}) }]) {
    await assert.rejects(buildService({ name: 'test', config, logger: { stream: lines().stream, ...own } }), (e: Error & { code: string }) => {
      assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
      assert.match(e.message, new RegExp(`logger.${Object.keys(own)[0] ?? ''} would replace the log redaction`))
      return true
    })
  }
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
  assert.deepEqual(logged.map((l) => l.msg).filter((m) => m !== 'Server listening at'), ['loaded', 'listed', 'request completed'])
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
  const urls = logged.filter((l) => l.msg === 'request completed').map((l) => (l.req as { url: string }).url)
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

/** A service with one route, `/things` answered by `handler`, logging at `info` into `out`, configured by `env`. */
async function headerService (t: { after: (fn: () => unknown) => void }, env: Record<string, string> = {}, handler: RouteHandlerMethod = async () => ({ ok: true })): Promise<{ app: Awaited<ReturnType<typeof buildService>>, read: () => Array<Record<string, unknown>> }> {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info', ...env }, dotenv: false })
  const app = await buildService({ name: 'test', config, logger: { stream: out.stream }, routes: [(a) => a.get('/things', handler)] })
  t.after(() => app.close())
  return { app, read: out.read }
}

const requestLinesOf = (logged: Array<Record<string, unknown>>): Array<Record<string, unknown>> => logged.filter((l) => l.msg === 'request completed').map((l) => l.req as Record<string, unknown>)

test('a name or phone a caller sends as Host or Accept-Version reaches no log line: a version, localhost and its port are shown', async (t) => {
  const { app, read } = await headerService(t)
  const sent: Array<Record<string, string>> = [
    { host: 'ann.lee.5551234567', 'accept-version': 'AnnLee' },
    { host: 'AnnLee:8080', 'accept-version': '555.123.4567' },
    { host: '55.51.234.56', 'accept-version': '^5551234567' },
    { host: '[::5551:2345:67]:80', 'accept-version': '1.2.3-AnnLee' },
    { host: 'localhost:3000', 'accept-version': '^2.1.0' },
    { host: 'LOCALHOST', 'accept-version': '1.x' }
  ]
  for (const headers of sent) assert.equal((await app.inject({ url: '/things', headers })).statusCode, 200)
  const logged = read()
  const text = JSON.stringify(logged)
  for (const value of ['Ann', 'Lee', '5551', '234567', '55.51']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.deepEqual(requestLinesOf(logged).map((r) => [r.host, r.version]), [
    ['[REDACTED]', '[REDACTED]'],
    ['[REDACTED]', '[REDACTED]'],
    ['[REDACTED]', '[REDACTED]'],
    ['[REDACTED]', '[REDACTED]'],
    ['localhost:3000', '^2.1.0'],
    ['LOCALHOST', '1.x']
  ])
})

test('LOG_HOSTS shows the host names it lists as sent in a request line; any other the caller sends is [REDACTED]', async (t) => {
  const listed = await headerService(t, { LOG_HOSTS: 'api.example.com, 10.0.0.7' })
  const unlisted = await headerService(t)
  for (const { app } of [listed, unlisted]) {
    for (const host of ['api.example.com', 'API.Example.com:8443', '10.0.0.7:3000', 'ann.lee.example.com']) await app.inject({ url: '/things', headers: { host } })
  }
  assert.deepEqual(requestLinesOf(listed.read()).map((r) => r.host), ['api.example.com', 'API.Example.com:8443', '10.0.0.7:3000', '[REDACTED]'])
  assert.deepEqual(requestLinesOf(unlisted.read()).map((r) => r.host), ['[REDACTED]', '[REDACTED]', '[REDACTED]', '[REDACTED]'])
  assert.throws(() => loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_HOSTS: 'api.example.com/leads' }, dotenv: false }), /LOG_HOSTS/)
})

test('the address a caller connected to is shown as the Host of its request line; another address it names is not', async (t) => {
  const { app, read } = await headerService(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  // node:http, not fetch: fetch sets the Host header itself.
  const get = async (host: string): Promise<number | undefined> => await new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/things', headers: { host } }, (res) => { res.resume().on('end', () => { resolve(res.statusCode) }) }).on('error', reject).end()
  })
  assert.equal(await get(`127.0.0.1:${port}`), 200)
  assert.equal(await get(`127.0.0.2:${port}`), 200)
  assert.deepEqual(requestLinesOf(read()).map((r) => r.host), [`127.0.0.1:${port}`, '[REDACTED]'])
})

test('a Host shown for the address one connection reached is not shown for the same Host on a connection to another address', async (t) => {
  const { app, read } = await headerService(t)
  await app.listen({ host: '0.0.0.0', port: 0 })
  const { port } = app.server.address() as { port: number }
  const get = async (to: string): Promise<number | undefined> => await new Promise((resolve, reject) => {
    request({ host: to, port, path: '/things', headers: { host: `127.0.0.1:${port}` } }, (res) => { res.resume().on('end', () => { resolve(res.statusCode) }) }).on('error', reject).end()
  })
  // The same Host, sent to 127.0.0.1 (the address it names) and then to 127.0.0.3 (which it does not): the answer
  // kept for the first must not serve the second.
  assert.equal(await get('127.0.0.1'), 200)
  assert.equal(await get('127.0.0.3'), 200)
  assert.equal(await get('127.0.0.1'), 200)
  assert.deepEqual(requestLinesOf(read()).map((r) => r.host), [`127.0.0.1:${port}`, '[REDACTED]', `127.0.0.1:${port}`])
})

test('a Host one service lists is not shown by another service in the same process that does not list it', async (t) => {
  const listing = await headerService(t, { LOG_HOSTS: 'ann.lee.example' })
  const other = await headerService(t)
  // Alternating, the same Host each time: the answer kept for one service's request must not serve the other's.
  for (let i = 0; i < 2; i++) {
    for (const app of [listing.app, other.app]) assert.equal((await app.inject({ url: '/things', headers: { host: 'ann.lee.example' } })).statusCode, 200)
  }
  assert.deepEqual(requestLinesOf(listing.read()).map((r) => r.host), ['ann.lee.example', 'ann.lee.example'])
  assert.deepEqual(requestLinesOf(other.read()).map((r) => r.host), ['[REDACTED]', '[REDACTED]'])
})

test('a name or phone behind a trusted proxy, in X-Forwarded-Host or X-Forwarded-For, reaches no log line', async (t) => {
  const { app, read } = await headerService(t, { TRUST_PROXY: '127.0.0.1/32' })
  const res = await app.inject({ url: '/things', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-host': 'ann.lee.5551234567', 'x-forwarded-for': 'AnnLee5551234567' } })
  assert.equal(res.statusCode, 200)
  const forwarded = await app.inject({ url: '/things', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.9' } })
  assert.equal(forwarded.statusCode, 200)
  const logged = read()
  const text = JSON.stringify(logged)
  for (const value of ['Ann', 'Lee', '5551234567']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.deepEqual(requestLinesOf(logged).map((r) => [r.host, r.remoteAddress]), [['[REDACTED]', '[REDACTED]'], ['localhost:80', '203.0.113.9']])
})

test('a name or phone sent as x-request-id reaches no log line: the request\'s lines carry a fresh uuid, NGINX\'s id is kept', async (t) => {
  const { app, read } = await headerService(t, { TRUST_PROXY: '127.0.0.1/32' })
  const nginx = '0123456789abcdef0123456789abcdef'
  for (const id of ['Ann.Lee.5551234567', nginx]) assert.equal((await app.inject({ url: '/things', remoteAddress: '127.0.0.1', headers: { 'x-request-id': id } })).statusCode, 200)
  const logged = read().filter((l) => l.reqId !== undefined)
  const text = JSON.stringify(logged)
  for (const value of ['Ann', 'Lee', '5551234567']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  const ids = [...new Set(logged.map((l) => l.reqId))]
  assert.equal(ids.length, 2, text)
  assert.match(String(ids[0]), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  assert.equal(ids[1], nginx)
})

test('a name or phone written as the zone of an IPv6 address in X-Forwarded-For (fe80::1%Ann.Lee.5551234567) reaches no log line: the address is shown without it', async (t) => {
  const { app, read } = await headerService(t, { TRUST_PROXY: '127.0.0.1/32' })
  for (const forwarded of ['fe80::1%Ann.Lee.5551234567', 'fe80::2%5551234567']) {
    assert.equal((await app.inject({ url: '/things', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': forwarded } })).statusCode, 200)
  }
  const logged = read()
  const text = JSON.stringify(logged)
  for (const value of ['Ann', 'Lee', '5551234567']) assert.ok(!text.includes(value), `${value} reached a log line: ${text}`)
  assert.deepEqual(requestLinesOf(logged).map((r) => r.remoteAddress), ['fe80::1', 'fe80::2'])
})

test('a LOG_HOSTS entry with a port (api.example.com:443), which no Host would ever match, is refused at start with what the setting takes; IPv6 addresses are taken', async (t) => {
  const load = (value: string): ChassisConfig => loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_HOSTS: value }, dotenv: false })
  for (const value of ['api.example.com:443', 'beef:8080', '10.0.0.7:3000', '[::1]', 'a,,b', '*.example.com', 'api.example.com,']) {
    assert.throws(() => load(value), /LOG_HOSTS must be comma-separated host names or IP addresses, without a port/, value)
  }
  for (const value of ['::1', 'fe80::1, ::ffff:10.0.0.7', '1:2:3:4:5:6:7:8', ' api.example.com , 10.0.0.7 ', '']) assert.equal(load(value).LOG_HOSTS, value)
  const { app, read } = await headerService(t, { LOG_HOSTS: '::1' })
  await app.inject({ url: '/things', headers: { host: '[::1]:3000' } })
  assert.deepEqual(requestLinesOf(read()).map((r) => r.host), ['[::1]:3000'])
})

test('an error carrying the Redis command it failed (an ioredis ReplyError) is logged with the command\'s name, never its arguments', () => {
  const out = lines()
  const log = pino({ level: 'info', ...logRedaction }, out.stream)
  const reply = Object.assign(new Error('NOPERM no permissions to run the \'publish\' command'), { name: 'ReplyError', command: { name: 'publish', args: ['events', '{"agentName":"Ann Lee"}'] } })
  log.warn({ err: reply }, 'publish failed')
  log.error({ err: new Error('wrapped', { cause: reply }) }, 'request failed')
  const text = JSON.stringify(out.read())
  assert.ok(!text.includes('Ann Lee'), text)
  assert.ok(!text.includes('"args"'), text)
  assert.equal((out.read()[0]?.err as { command?: unknown }).command, 'publish')
  assert.deepEqual(reply.command.args, ['events', '{"agentName":"Ann Lee"}'], 'the error itself is left unchanged')
})
