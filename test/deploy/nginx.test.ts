import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { buildApp } from '../../services/api/app.js'
import { DOCS_CSP } from '../../plugins/chassis/index.js'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { nginxTest, preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'
import { startDataService, startOrchestrator } from '../helpers/services.js'

// A real NGINX with the shipped configuration in front of two api instances and one of each other service.
const cleanups: Array<() => unknown> = []
const scope = { after: (fn: () => unknown) => { cleanups.push(fn) } }
let db: TestSchema
let edge = ''
let status = ''
const apis: Array<{ app: FastifyInstance, served: number, ips: string[] }> = []
let leadIds: string[] = []
// A caller with an API key, as clients reach NGINX (the service key is for calls between services, not through it).
let SERVICE_HEADERS: Record<string, string> = {}

before(async () => {
  db = await createTestSchema()
  cleanups.push(() => db.drop())
  // The services trust NGINX's address (loopback here) for X-Forwarded-For, as TRUST_PROXY does in the cluster.
  const env = { CACHE_PREFIX: `${uniqueName('edge')}:`, TRUST_PROXY: '127.0.0.1/32' }
  const ports: number[] = []
  for (let i = 0; i < 2; i++) {
    const app = await buildApp(testApiConfig(db, env))
    const entry = { app, served: 0, ips: [] as string[] }
    app.addHook('onRequest', async (request) => {
      entry.served++
      if (request.headers['x-test-marker']) entry.ips.push(request.ip)
    })
    const port = await freePort()
    await app.listen({ host: '127.0.0.1', port })
    cleanups.push(() => app.close())
    apis.push(entry)
    ports.push(port)
  }
  const data = await startDataService(scope, db, env)
  const orchestrator = await startOrchestrator(scope, db, data.url, env, true)
  const [publicPort, statusPort] = [await freePort(), await freePort()]
  const prefix = preparePrefix(templateConfig({ api: ports, dataService: Number(new URL(data.url).port), orchestrator: Number(new URL(orchestrator.url).port), publicPort, statusPort }))
  await startNginx(scope, prefix, publicPort)
  edge = `http://127.0.0.1:${publicPort}`
  status = `http://127.0.0.1:${statusPort}`
  const first = apis[0]?.app
  assert.ok(first)
  SERVICE_HEADERS = { 'x-api-key': (await first.apiKeys.mint('edge test', ['leads:read', 'admin', 'routing'])).key }
  const rows = await db.sql<{ id: string }>(
    "INSERT INTO leads (first_name, last_name, email, product, state) SELECT 'N', 'L' || i, 'edge' || i || '@example.com', 'auto', 'CA' FROM generate_series(1, 400) AS i RETURNING id")
  leadIds = rows.map((r) => r.id)
})

after(async () => {
  for (const fn of cleanups.reverse()) await fn()
})

test('the shipped configuration passes nginx -t (addresses templated to loopback)', async () => {
  const result = nginxTest(preparePrefix(templateConfig({ api: [await freePort()], dataService: await freePort(), orchestrator: await freePort(), publicPort: await freePort(), statusPort: await freePort() })))
  assert.ok(result.ok, result.output)
  assert.match(result.output, /test is successful/)
})

test('requests spread over both api instances', async () => {
  const before = apis.map((a) => a.served)
  await Promise.all(leadIds.slice(0, 40).map((id) => fetch(`${edge}/api/v1/leads/${id}`, { headers: SERVICE_HEADERS })))
  const served = apis.map((a, i) => a.served - (before[i] ?? 0))
  assert.ok(served.every((n) => n >= 5), `served ${served.join(' / ')}`)
})

test('a GET is an NGINX cache HIT on its second request, shared by every key that holds leads:read and no one else', async () => {
  const url = `${edge}/api/v1/leads?state=CA&limit=7`
  const first = await fetch(url, { headers: SERVICE_HEADERS })
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-cache-status'), 'MISS')
  const second = await fetch(url, { headers: SERVICE_HEADERS })
  assert.equal(second.headers.get('x-cache-status'), 'HIT')
  const firstBody = await first.json()
  assert.deepEqual(await second.json(), firstBody)
  const api = apis[0]?.app
  assert.ok(api)
  const reader = (await api.apiKeys.mint('edge reader', ['leads:read'])).key
  const shared = await fetch(url, { headers: { 'x-api-key': reader } })
  assert.equal(shared.headers.get('x-cache-status'), 'HIT', 'another reader shares the entry')
  assert.deepEqual(await shared.json(), firstBody)
  // Everyone else goes to the service, which answers them: never from the cache.
  const writer = (await api.apiKeys.mint('edge writer', ['leads:write'])).key
  const answers = [
    [await fetch(url), 401, 'API_KEY_REQUIRED'],
    [await fetch(url, { headers: { 'x-api-key': 'not-a-key' } }), 401, 'INVALID_API_KEY'],
    [await fetch(url, { headers: { 'x-api-key': writer } }), 403, 'MISSING_SCOPE']
  ] as const
  for (const [res, statusCode, code] of answers) {
    assert.equal(res.status, statusCode)
    assert.equal((await res.json() as { code: string }).code, code)
    assert.equal(res.headers.get('x-cache-status'), 'BYPASS')
  }
  // The edge's auth route is not public.
  assert.equal((await fetch(`${edge}/api/v1/edge/auth`, { headers: SERVICE_HEADERS })).status, 404)
})

test('a response served from the edge cache carries this request\'s id and no other caller\'s rate-limit counts', async () => {
  const url = `${edge}/api/v1/leads?state=TX&limit=3`
  const first = await fetch(url, { headers: SERVICE_HEADERS })
  assert.equal(first.headers.get('x-cache-status'), 'MISS')
  assert.ok(first.headers.get('x-request-id'))
  const hit = await fetch(url, { headers: SERVICE_HEADERS })
  assert.equal(hit.headers.get('x-cache-status'), 'HIT')
  assert.ok(hit.headers.get('x-request-id'))
  assert.notEqual(hit.headers.get('x-request-id'), first.headers.get('x-request-id'))
  for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit', 'ratelimit-policy']) {
    assert.equal(hit.headers.get(name), null, name)
  }
})

test('JSON is gzipped; security headers are on a 200 and on a 404, once each', async () => {
  const ok = await fetch(`${edge}/api/v1/leads?limit=50`, { headers: { ...SERVICE_HEADERS, 'accept-encoding': 'gzip' } })
  assert.equal(ok.status, 200)
  assert.equal(ok.headers.get('content-encoding'), 'gzip')
  const missing = await fetch(`${edge}/nothing-here`)
  assert.equal(missing.status, 404)
  assert.equal((await missing.json() as { code: string }).code, 'NOT_FOUND')
  for (const res of [ok, missing]) {
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    assert.equal(res.headers.get('content-security-policy'), "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
    assert.equal(res.headers.get('strict-transport-security'), 'max-age=31536000; includeSubDomains')
  }
})

test('each service\'s OpenAPI document and reference page are served through NGINX without a key, the page with its own CSP', async () => {
  for (const prefix of ['/api/v1', '/data/v1', '/orchestrator/v1']) {
    const doc = await fetch(`${edge}${prefix}/openapi.json`)
    assert.equal(doc.status, 200, prefix)
    const document = await doc.json() as { openapi: string, paths: Record<string, unknown> }
    assert.equal(document.openapi, '3.1.0')
    assert.ok(Object.keys(document.paths).some((path) => path.startsWith(prefix)), prefix)
    const page = await fetch(`${edge}${prefix}/docs/`)
    assert.equal(page.status, 200, prefix)
    assert.match(await page.text(), /swagger-ui/)
    assert.equal(page.headers.get('content-security-policy'), DOCS_CSP, `${prefix}: one CSP, the page's`)
    const script = await fetch(`${edge}${prefix}/docs/static/swagger-initializer.js`)
    assert.equal(script.status, 200, prefix)
    assert.equal(script.headers.get('content-security-policy'), DOCS_CSP)
    assert.equal((await fetch(`${edge}${prefix}/docs/json`)).status, 200, `${prefix}: the page's own copy of the document`)
  }
})

test('the edge rate limit answers 429 on admin routes (strict: 10 per minute)', async () => {
  const answers = await Promise.all(Array.from({ length: 12 }, () => fetch(`${edge}/api/v1/admin/cache`, { headers: SERVICE_HEADERS })))
  const limited = answers.filter((r) => r.status === 429)
  assert.ok(limited.length >= 1, answers.map((r) => r.status).join(','))
  assert.equal((await limited[0]?.json() as { code: string }).code, 'RATE_LIMITED')
})

test('the service key of internal calls does not work through NGINX', async () => {
  const { TEST_SERVICE_KEY } = await import('../helpers/database.js')
  const res = await fetch(`${edge}/api/v1/leads?limit=1`, { headers: { 'x-service-key': TEST_SERVICE_KEY } })
  assert.equal(res.status, 401)
})

test('status and health answer on the status port only; /metrics is not public', async () => {
  const stub = await fetch(`${status}/stub_status`)
  assert.match(await stub.text(), /Active connections/)
  assert.equal((await fetch(`${status}/health`)).status, 200)
  assert.equal((await fetch(`${edge}/stub_status`)).status, 404)
  assert.equal((await fetch(`${edge}/metrics`)).status, 404)
  assert.equal((await fetch(`${edge}/api/../metrics`)).status, 404)
})

test('a forged X-Forwarded-For does not reach the services: they see the address NGINX saw', async () => {
  await fetch(`${edge}/api/v1/leads/${leadIds[0]}?x=1`, { headers: { ...SERVICE_HEADERS, 'x-test-marker': '1', 'x-forwarded-for': '203.0.113.99' } }).catch(() => undefined)
  await fetch(`${edge}/api/v1/leads/${leadIds[1]}`, { headers: { ...SERVICE_HEADERS, 'x-test-marker': '1', 'x-forwarded-for': '203.0.113.99' } })
  const seen = apis.flatMap((a) => a.ips)
  assert.ok(seen.length > 0)
  assert.ok(seen.every((ip) => ip === '127.0.0.1'), seen.join(', '))
})

test('a WebSocket to the orchestrator works through NGINX', async () => {
  const ws = new WebSocket(`${edge.replace('http', 'ws')}/orchestrator/v1/events`, { headers: SERVICE_HEADERS })
  const [message] = await once(ws, 'message') as [Buffer]
  assert.equal(JSON.parse(message.toString()).type, 'hello')
  ws.close()
})

test('killing one api instance under load loses no GET', async () => {
  const victim = apis[1]
  assert.ok(victim)
  let next = 0
  const ids = leadIds.slice(50, 350)
  const statuses: number[] = []
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await fetch(`${edge}/api/v1/leads/${id}`, { headers: SERVICE_HEADERS })
      statuses.push(res.status)
      await res.arrayBuffer()
    }
  }
  const load = Promise.all(Array.from({ length: 10 }, worker))
  while (next < 60) await new Promise((resolve) => setTimeout(resolve, 5))
  // A crash, not a graceful stop: the listener goes and open connections are cut.
  victim.app.server.close()
  victim.app.server.closeAllConnections()
  await load
  assert.equal(statuses.length, ids.length)
  assert.deepEqual(statuses.filter((s) => s !== 200), [], 'every GET answered 200')
})

test('when the api cannot answer the edge\'s auth subrequest, the request still reaches it, uncached', async () => {
  // A stand-in api whose auth route fails as a service under pressure would; every other route answers.
  const seen: string[] = []
  const upstream = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`)
    if (req.url === '/api/v1/edge/auth') return res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"OVERLOADED"}')
    res.writeHead(200, { 'content-type': 'application/json', 'x-ratelimit-remaining': '41' }).end('{"data":[]}')
  })
  const upstreamPort = await freePort()
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve))
  const local: Array<() => unknown> = [() => { upstream.close() }]
  try {
    const [publicPort, statusPort, spare1, spare2] = [await freePort(), await freePort(), await freePort(), await freePort()]
    const prefix = preparePrefix(templateConfig({ api: [upstreamPort], dataService: spare1, orchestrator: spare2, publicPort, statusPort }))
    await startNginx({ after: (fn) => { local.push(fn) } }, prefix, publicPort)
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`http://127.0.0.1:${publicPort}/api/v1/leads?limit=2`, { headers: { 'x-api-key': 'some-key' } })
      assert.equal(res.status, 200)
      assert.deepEqual(await res.json(), { data: [] })
      assert.equal(res.headers.get('x-cache-status'), 'BYPASS')
      assert.equal(res.headers.get('x-ratelimit-remaining'), '41', 'the service\'s own headers pass')
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    }
    assert.equal(seen.filter((r) => r === 'GET /api/v1/leads?limit=2').length, 2, 'each request reached the service')
  } finally {
    for (const fn of local.reverse()) await fn()
  }
})
