// A parameter or field name a caller sends is shown in a logged URL, and named by a validation error, only when some
// route declares it. Its own file: the declared names are process-wide, so no other test's routes add to them here.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { buildService, type Registrar } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'
import { noteRoute, requestUrl } from './request-url.js'

function lines (): { stream: Writable, read: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { stream, read: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

async function service (t: { after: (fn: () => unknown) => void }, routes: Registrar): Promise<{ app: FastifyInstance, logged: () => Array<Record<string, unknown>> }> {
  const out = lines()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'info' }, dotenv: false })
  const app = await buildService({ name: 'test', config, logger: { stream: out.stream }, routes: [routes] })
  t.after(() => app.close())
  return { app, logged: out.read }
}

const urlsLogged = (logged: Array<Record<string, unknown>>): string[] =>
  logged.filter((l) => l.msg === 'request completed').map((l) => (l.req as { url: string }).url)

const closed = (properties: Record<string, unknown>): Record<string, unknown> => ({ type: 'object', additionalProperties: false, properties })

test('a name a caller sends as an undeclared query parameter name (?AnnLee=1) reaches no logged or traced URL', async (t) => {
  // requestUrl, which both the request's log lines and its server span show.
  const bare = Fastify()
  t.after(() => bare.close())
  const seen: string[] = []
  bare.addHook('onRoute', (route) => { noteRoute(route) })
  bare.addHook('onRequest', (request: FastifyRequest, _reply, done) => { seen.push(requestUrl(request)); done() })
  bare.get('/leads', { schema: { querystring: { type: 'object', properties: { status: { type: 'string', enum: ['new'] } } } } }, async () => ({}))
  for (const url of ['/leads?AnnLee=1&status=new', '/leads?AnnLee', '/leads?status=new&Ann_Lee2=x', '/nowhere?AnnLee=1']) await bare.inject(url)
  assert.deepEqual(seen, ['/leads?[REDACTED]=[REDACTED]&status=new', '/leads?[REDACTED]', '/leads?status=new&[REDACTED]=[REDACTED]', '/[REDACTED]?[REDACTED]=[REDACTED]'])
  assert.equal(requestUrl({ url: '/leads?AnnLee=1' } as unknown as FastifyRequest), '/leads?[REDACTED]=[REDACTED]')

  // A service's log lines, on a route that takes any parameter and on one that refuses it.
  const { app, logged } = await service(t, (a) => {
    a.get('/things', async () => ({ ok: true }))
    a.get('/leads', { schema: { querystring: closed({ status: { type: 'string', enum: ['new'] } }) } }, async () => ({ ok: true }))
  })
  const open = await app.inject('/things?AnnLee=1')
  const refused = await app.inject('/leads?status=new&AnnLee=1')
  assert.deepEqual([open.statusCode, refused.statusCode], [200, 400])
  const lines = logged()
  assert.deepEqual(urlsLogged(lines), ['/things?[REDACTED]=[REDACTED]', '/leads?status=new&[REDACTED]=[REDACTED]'])
  const text = JSON.stringify(lines)
  assert.ok(!text.includes('Ann'), `a name reached a log line: ${text}`)
})

test('a name sent as a body field or query parameter a route does not allow reaches no log line nor the validation message', async (t) => {
  const { app, logged } = await service(t, (a) => {
    a.get('/leads', { schema: { querystring: closed({ status: { type: 'string' } }) } }, async () => ({ ok: true }))
    a.post('/leads', { schema: { body: closed({ status: { type: 'string' }, address: closed({ city: { type: 'string' } }) }) } }, async () => ({ ok: true }))
  })
  const answers = [
    await app.inject('/leads?AnnLee=1'),
    await app.inject({ method: 'POST', url: '/leads', payload: { AnnLee: 1 } }),
    await app.inject({ method: 'POST', url: '/leads', payload: { status: 'new', Ann: 1 } }),
    await app.inject({ method: 'POST', url: '/leads', payload: { address: { city: 'x', Ann: 1 } } })
  ]
  assert.deepEqual(answers.map((r) => [r.statusCode, r.json().code, r.json().message]), [
    [400, 'VALIDATION_ERROR', 'querystring has a property that is not allowed'],
    [400, 'VALIDATION_ERROR', 'body has a property that is not allowed'],
    [400, 'VALIDATION_ERROR', 'body has a property that is not allowed'],
    [400, 'VALIDATION_ERROR', 'body/address has a property that is not allowed']
  ])
  const lines = logged()
  assert.ok(lines.some((l) => l.msg === 'body has a property that is not allowed'), 'the validation message was logged')
  const text = JSON.stringify(lines) + answers.map((r) => r.body).join('')
  assert.ok(!text.includes('Ann'), `a name reached a log line or an answer: ${text}`)
})

test('a name sent as the key of a map a body allows (additionalProperties with a schema) reaches no log line nor the validation message', async (t) => {
  const { app, logged } = await service(t, (a) => {
    const map = { type: 'object', additionalProperties: { type: 'integer' } }
    a.post('/tags', { schema: { body: { type: 'object', properties: { tags: map, lists: { type: 'array', items: map } } } } }, async () => ({ ok: true }))
  })
  const answers = [
    await app.inject({ method: 'POST', url: '/tags', payload: { tags: { AnnLee: 'x' } } }),
    await app.inject({ method: 'POST', url: '/tags', payload: { lists: [{ tags: 1 }, { Ann: 'x' }] } }),
    await app.inject({ method: 'POST', url: '/tags', payload: { tags: { 5551234567: 'x' } } })
  ]
  assert.deepEqual(answers.map((r) => [r.statusCode, r.json().message]), [
    [400, 'body/tags/[REDACTED] must be integer'],
    [400, 'body/lists/1/[REDACTED] must be integer'],
    [400, 'body/tags/[REDACTED] must be integer']
  ])
  const text = JSON.stringify(logged()) + answers.map((r) => r.body).join('')
  for (const value of ['Ann', '5551234567']) assert.ok(!text.includes(value), `${value} reached a log line or an answer: ${text}`)
})

test('a declared parameter name sent to another route is still named in the URL and the message', async (t) => {
  const { app, logged } = await service(t, (a) => {
    // Any name a route declares, also one not shaped like an identifier (`sort-by`).
    a.get('/leads', { schema: { querystring: { type: 'object', properties: { status: { type: 'string' }, 'sort-by': { type: 'string' } } } } }, async () => ({ ok: true }))
    a.post('/leads', { schema: { body: { type: 'object', properties: { address: { type: 'object', properties: { city: { type: 'string' } } } } } } }, async () => ({ ok: true }))
    a.get('/agents', { schema: { querystring: closed({ limit: { type: 'integer' } }) } }, async () => ({ ok: true }))
    a.post('/agents', { schema: { body: closed({ name: { type: 'string' } }) } }, async () => ({ ok: true }))
  })
  const answers = [
    await app.inject('/agents?limit=1&status=new'),
    await app.inject('/agents?sort-by=name'),
    await app.inject({ method: 'POST', url: '/agents', payload: { name: 'x', city: 'y' } }),
    await app.inject('/nowhere?api_key=k&limit=1')
  ]
  assert.deepEqual(answers.map((r) => r.json().message), ['querystring/status is not allowed', 'querystring/sort-by is not allowed', 'body/city is not allowed', 'Route GET /nowhere not found'])
  assert.deepEqual(urlsLogged(logged()), ['/agents?limit=1&status=[REDACTED]', '/agents?sort-by=[REDACTED]', '/agents', '/[REDACTED]?api_key=[REDACTED]&limit=[REDACTED]'])
})
