import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest } from 'node:http'
import { connect, type Socket } from 'node:net'
import { execFileSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { request } from 'undici'
import { buildApp } from '../../services/api/app.js'
import { queryChannel, type QueryContext } from '@lead-chassis/plugins/db-pool'
import { DOCS_CSP } from '@lead-chassis/plugins/chassis'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { NGINX_DIR, nginxTest, preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'
import { startDataService, startOrchestrator } from '../helpers/services.js'

// A real NGINX with the shipped configuration in front of two api instances and one of each other service.
const cleanups: Array<() => unknown> = []
const scope = { after: (fn: () => unknown) => { cleanups.push(fn) } }
let db: TestSchema
let edge = ''
// NGINX's access log, written under its prefix instead of to stdout (the shipped format, buffer and all).
let accessLog = ''
// NGINX's error log, at the shipped level, written under its prefix instead of to stderr.
let errorLog = ''
let status = ''
const apis: Array<{ app: FastifyInstance, served: number, ips: string[], requestIds: string[], traceHeaders: string[] }> = []
let leadIds: string[] = []
let others: FastifyInstance[] = []
// A caller with an API key, as clients reach NGINX (the service key is for calls between services, not through it).
let SERVICE_HEADERS: Record<string, string> = {}

before(async () => {
  db = await createTestSchema()
  cleanups.push(() => db.drop())
  // The services trust NGINX's address (loopback here) for X-Forwarded-For, as TRUST_PROXY does in the cluster. They
  // share Redis, as a fleet does: without it each api instance's cache would keep what the other's writes changed.
  const env = { CACHE_PREFIX: `${uniqueName('edge')}:`, RATE_LIMIT_PREFIX: `${uniqueName('edge-rl')}:`, REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', TRUST_PROXY: '127.0.0.1/32' }
  const ports: number[] = []
  for (let i = 0; i < 2; i++) {
    const app = await buildApp(testApiConfig(db, env))
    const entry = { app, served: 0, ips: [] as string[], requestIds: [] as string[], traceHeaders: [] as string[] }
    app.addHook('onRequest', async (request) => {
      entry.served++
      if (request.headers['x-test-trace']) entry.traceHeaders.push(JSON.stringify([request.headers.traceparent, request.headers.tracestate, request.headers.baggage]))
      if (request.headers['x-test-marker']) entry.ips.push(request.ip)
      if (request.headers['x-test-request-id']) entry.requestIds.push(request.id)
    })
    const port = await freePort()
    await app.listen({ host: '127.0.0.1', port })
    cleanups.push(() => app.close())
    apis.push(entry)
    ports.push(port)
  }
  const data = await startDataService(scope, db, env)
  const orchestrator = await startOrchestrator(scope, db, data.url, env, true)
  others = [data.app, orchestrator.app]
  const [publicPort, statusPort, keyGatePort] = [await freePort(), await freePort(), await freePort()]
  const config = templateConfig({ api: ports, dataService: Number(new URL(data.url).port), orchestrator: Number(new URL(orchestrator.url).port), publicPort, statusPort, keyGatePort })
  assert.match(config, /access_log \/dev\/stdout edge /)
  assert.match(config, /error_log stderr \w+;/)
  const prefix = preparePrefix(config.replace('access_log /dev/stdout edge ', 'access_log access.log edge ').replace(/error_log stderr (\w+);/g, 'error_log error.log $1;'))
  accessLog = join(prefix, 'access.log')
  errorLog = join(prefix, 'error.log')
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
  const result = nginxTest(preparePrefix(templateConfig({ api: [await freePort()], dataService: await freePort(), orchestrator: await freePort(), publicPort: await freePort(), statusPort: await freePort(), keyGatePort: await freePort() })))
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

/** One HTTP/1.1 answer read off a raw keep-alive socket: its head and its body (Content-Length framed). */
async function readAnswer (socket: Socket, pending: { bytes: Buffer }): Promise<{ head: string, body: Buffer }> {
  for (;;) {
    const end = pending.bytes.indexOf('\r\n\r\n')
    if (end >= 0) {
      const head = pending.bytes.subarray(0, end).toString('latin1')
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN)
      assert.ok(Number.isInteger(length), `a Content-Length: ${head}`)
      if (pending.bytes.length >= end + 4 + length) {
        const body = pending.bytes.subarray(end + 4, end + 4 + length)
        pending.bytes = pending.bytes.subarray(end + 4 + length)
        return { head, body }
      }
    }
    const [chunk] = await once(socket, 'data') as [Buffer]
    pending.bytes = Buffer.concat([pending.bytes, chunk])
  }
}

/** The data segments a local TCP socket has received, from the kernel's own count (`ss -i`). */
function dataSegmentsIn (localPort: number): number {
  const out = execFileSync('ss', ['-tinH', 'state', 'established', `( sport = :${localPort} )`], { encoding: 'utf8' })
  const n = /data_segs_in:(\d+)/.exec(out)?.[1]
  assert.ok(n !== undefined, `ss shows the socket's data_segs_in: ${out}`)
  return Number(n)
}

test('an answer from the edge cache leaves NGINX as one TCP segment, its headers with its body, not a segment of headers and another of body, and is not held back by the cork (Linux holds a corked partial segment up to 200 ms)', async () => {
  const path = '/api/v1/leads?state=CA&limit=20'
  assert.equal((await fetch(`${edge}${path}`, { headers: SERVICE_HEADERS })).status, 200)
  const socket = connect(Number(new URL(edge).port), '127.0.0.1')
  await once(socket, 'connect')
  try {
    const pending = { bytes: Buffer.alloc(0) }
    const ask = async (): Promise<{ head: string, body: Buffer }> => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nX-Api-Key: ${SERVICE_HEADERS['x-api-key'] ?? ''}\r\n\r\n`)
      return readAnswer(socket, pending)
    }
    const answers = 20
    let perAnswer = NaN
    let medianMs = NaN
    // The entry lives five seconds: a round in which it was renewed (an answer not a HIT) is measured again.
    for (let round = 0; round < 3 && Number.isNaN(perAnswer); round++) {
      await ask()
      const before = dataSegmentsIn(socket.localPort ?? 0)
      const heads: string[] = []
      const tookMs: number[] = []
      for (let i = 0; i < answers; i++) {
        const started = performance.now()
        const { head, body } = await ask()
        tookMs.push(performance.now() - started)
        assert.ok(body.length > 2000, `a page of leads: ${body.length} bytes`)
        heads.push(head)
      }
      if (heads.every((h) => /\r\nx-cache-status: HIT/i.test(h))) {
        perAnswer = (dataSegmentsIn(socket.localPort ?? 0) - before) / answers
        medianMs = tookMs.sort((x, y) => x - y)[answers / 2] ?? NaN
      }
    }
    assert.ok(!Number.isNaN(perAnswer), 'a round of cache HITs')
    assert.ok(perAnswer <= 1.2, `${perAnswer} data segments per cached answer`)
    // The median, not the slowest: a busy machine may delay one answer, a cork left on delays every one.
    assert.ok(medianMs < 100, `the median answer took ${medianMs.toFixed(1)} ms`)
  } finally {
    socket.destroy()
  }
})

test('a write reaches readers of an edge-cached answer within six seconds (its five, counted in whole seconds), and once the renewed answer is served no later one is the old (no descriptor of a replaced cache file is read)', { timeout: 30000 }, async (t) => {
  const api = apis[0]?.app
  assert.ok(api)
  const id = leadIds[398] as string
  const url = `${edge}/api/v1/leads/${id}`
  // A key of its own, read at 20 a second: within the edge's per-key burst, and the other tests' key keeps its own.
  const reader = { 'x-api-key': (await api.apiKeys.mint('edge renewal reader', ['leads:read'])).key }
  const read = async (): Promise<{ cache: string | null, status: string }> => {
    const res = await fetch(url, { headers: reader })
    assert.equal(res.status, 200)
    return { cache: res.headers.get('x-cache-status'), status: (await res.json() as { status: string }).status }
  }
  await read()
  assert.deepEqual(await read(), { cache: 'HIT', status: 'new' })
  const writer = (await api.apiKeys.mint('edge renewal writer', ['leads:write'])).key
  const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${id}`, headers: { 'x-api-key': writer }, payload: { status: 'contacted' } })
  assert.equal(patched.statusCode, 200, patched.body)
  const written = performance.now()
  // Read every 50 ms, so the answer's cache file stays among the descriptors each worker keeps open.
  const seen: Array<{ ms: number, cache: string | null, status: string }> = []
  while (performance.now() - written < 9000) {
    seen.push({ ms: Math.round(performance.now() - written), ...await read() })
    await sleep(50)
  }
  const firstNew = seen.findIndex((s) => s.status === 'contacted')
  t.diagnostic(`the write reached the edge's readers ${seen[firstNew]?.ms} ms after it; ${seen.length} reads`)
  assert.ok(firstNew >= 0, `the write reached the readers: ${JSON.stringify(seen.filter((_, i) => i % 20 === 0))}`)
  // Six seconds, and the background update's round trip to an api instance on a busy machine.
  assert.ok((seen[firstNew]?.ms ?? Infinity) < 7500, `the first answer with the write came ${seen[firstNew]?.ms} ms after it`)
  const stale = seen.slice(firstNew).filter((s) => s.status !== 'contacted')
  assert.deepEqual(stale, [], 'no answer after the renewed one is the old')
  assert.ok(seen.slice(firstNew).filter((s) => s.cache === 'HIT').length > 10, 'the renewed answer is served from the cache')
})

test('a GET presenting X-Read-After-LSN is never answered from the edge cache', async () => {
  const url = `${edge}/api/v1/leads?state=NY&limit=4`
  assert.equal((await fetch(url, { headers: SERVICE_HEADERS })).headers.get('x-cache-status'), 'MISS')
  assert.equal((await fetch(url, { headers: SERVICE_HEADERS })).headers.get('x-cache-status'), 'HIT')
  const presenting = await fetch(url, { headers: { ...SERVICE_HEADERS, 'x-read-after-lsn': '0/3015FE0' } })
  assert.equal(presenting.status, 200)
  assert.equal(presenting.headers.get('x-cache-status'), 'BYPASS')
})

test('an answer fetched with X-Read-After-LSN is not stored at the edge, so a slower refresh of the entry cannot replace it with what was read before the write, and readers who had seen the write never see the answer from before it again', async () => {
  const api = apis[0]?.app
  assert.ok(api)
  const url = `${edge}/api/v1/leads/${leadIds[397] as string}`
  const get = async (headers: Record<string, string> = {}): Promise<{ cache: string | null, etag: string | null, status: string }> => {
    const res = await fetch(url, { headers: { ...SERVICE_HEADERS, ...headers } })
    assert.equal(res.status, 200)
    return { cache: res.headers.get('x-cache-status'), etag: res.headers.get('etag'), status: (await res.json() as { status: string }).status }
  }
  const stored = await get()
  assert.equal((await get()).cache, 'HIT')
  const writer = (await api.apiKeys.mint('edge lsn writer', ['leads:write'])).key
  const patched = await api.inject({ method: 'PATCH', url: `/api/v1/leads/${leadIds[397] as string}`, headers: { 'x-api-key': writer }, payload: { status: 'qualified' } })
  assert.equal(patched.statusCode, 200, patched.body)
  const position = String(patched.headers['x-read-after-lsn'] ?? '0/0')
  const presenting = await get({ 'x-read-after-lsn': position })
  assert.deepEqual([presenting.cache, presenting.status], ['BYPASS', 'qualified'])
  // Within the entry's five seconds the readers' entry is still the one stored before the write, not the writer's.
  const after = await get()
  assert.deepEqual([after.cache, after.etag], ['HIT', stored.etag])
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
    // Swagger UI's bundle (about 1.7 MB) leaves the edge gzipped, and a browser holding it revalidates it (304)
    // instead of fetching it again. undici's request, not fetch: fetch adds `cache-control: no-cache` to a
    // conditional request, which forbids the 304.
    const bundle = await request(`${edge}${prefix}/docs/static/swagger-ui-bundle.js`, { headers: { 'accept-encoding': 'gzip' } })
    const compressed = (await bundle.body.arrayBuffer()).byteLength
    assert.equal(bundle.statusCode, 200, prefix)
    assert.equal(bundle.headers['content-encoding'], 'gzip', `${prefix}: the bundle is compressed`)
    assert.ok(compressed < 700_000, `${prefix}: ${compressed} bytes on the wire`)
    const etag = bundle.headers.etag
    assert.equal(typeof etag, 'string', `${prefix}: the bundle carries an ETag`)
    const again = await request(`${edge}${prefix}/docs/static/swagger-ui-bundle.js`, { headers: { 'accept-encoding': 'gzip', 'if-none-match': etag as string } })
    await again.body.dump()
    assert.equal(again.statusCode, 304, `${prefix}: revalidated without the body`)
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

test('an answer the api made for this request passes its five rate-limit headers through the edge; the same answer from the cache passes none', async () => {
  // A stand-in api that vouches for every key and sends the headers its limiter sends.
  const limits = { 'x-ratelimit-limit': '1000', 'x-ratelimit-remaining': '998', 'x-ratelimit-reset': '1764547200', ratelimit: '"apiKey";r=998;t=60', 'ratelimit-policy': '"apiKey";q=1000;w=60' }
  const upstream = createServer((req, res) => {
    if (req.url === '/api/v1/edge/auth') return res.writeHead(204, { 'x-edge-scope': 'leads:read' }).end()
    res.writeHead(200, { 'content-type': 'application/json', ...limits }).end('{"data":[]}')
  })
  const upstreamPort = await freePort()
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve))
  const local: Array<() => unknown> = [() => { upstream.close() }]
  try {
    const [publicPort, statusPort, spare1, spare2, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
    const prefix = preparePrefix(templateConfig({ api: [upstreamPort], dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort }))
    await startNginx({ after: (fn) => { local.push(fn) } }, prefix, publicPort)
    const url = `http://127.0.0.1:${publicPort}/api/v1/leads?limit=4`
    const fresh = await fetch(url, { headers: { 'x-api-key': 'some-key' } })
    assert.equal(fresh.headers.get('x-cache-status'), 'MISS')
    for (const [name, value] of Object.entries(limits)) assert.equal(fresh.headers.get(name), value, name)
    const cached = await fetch(url, { headers: { 'x-api-key': 'another-key' } })
    assert.equal(cached.headers.get('x-cache-status'), 'HIT')
    for (const name of Object.keys(limits)) assert.equal(cached.headers.get(name), null, name)
  } finally {
    for (const fn of local.reverse()) await fn()
  }
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
    const [publicPort, statusPort, spare1, spare2, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
    const prefix = preparePrefix(templateConfig({ api: [upstreamPort], dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort }))
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

/** A GET from a loopback address of our choosing (NGINX sees it as the client address), with the whole body. */
async function getFrom (url: string, headers: Record<string, string>, localAddress = '127.0.0.1', method = 'GET'): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, localAddress, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

function inventedKey (): string {
  const id = randomBytes(12).toString('base64').replace(/[^A-Za-z0-9]/g, 'A').slice(0, 12)
  return `lck_${id}_${randomBytes(32).toString('base64url')}`
}

/** The platform's error body, with the status it answered. */
function assertErrorBody (res: { status: number, headers: Record<string, string | string[] | undefined>, body: string }, what: string): { code: string } {
  assert.match(String(res.headers['content-type']), /^application\/json/, `${what}: ${res.status} ${res.body.slice(0, 120)}`)
  const body = JSON.parse(res.body) as { statusCode: number, code: string, error: string, message: string }
  assert.equal(body.statusCode, res.status, what)
  for (const field of ['code', 'error', 'message'] as const) assert.equal(typeof body[field], 'string', `${what}: ${field}`)
  return body
}

test('through NGINX, 1,000 invented keys from one address cost at most ~100 key lookups and mostly stop at the edge', async (t) => {
  let lookups = 0
  const count = { start: (ctx: QueryContext) => { if (ctx.text.includes('FROM api_keys WHERE id')) lookups++ } }
  queryChannel.subscribe(count as never)
  t.after(() => queryChannel.unsubscribe(count as never))
  // Every request that reaches an api instance, counted before any hook (one refused by a hook included).
  let apiRequests = 0
  const onRequest = (): void => { apiRequests++ }
  for (const a of apis) a.app.server.on('request', onRequest)
  t.after(() => { for (const a of apis) a.app.server.off('request', onRequest) })
  const statuses = new Map<string, number>()
  let sent = 0
  const worker = async (): Promise<void> => {
    while (sent < 1000) {
      sent++
      const res = await getFrom(`${edge}/api/v1/leads?limit=1`, { 'x-api-key': inventedKey() }, '127.0.0.7')
      const { code } = assertErrorBody(res, 'invented key')
      statuses.set(`${res.status} ${code}`, (statuses.get(`${res.status} ${code}`) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: 10 }, worker))
  t.diagnostic(`through NGINX, 1,000 invented keys from one address: ${lookups} PostgreSQL lookups, ${apiRequests} api requests, answers ${JSON.stringify(Object.fromEntries(statuses))}`)
  assert.ok(lookups <= 100, `${lookups} lookups`)
  // Before, every one of them cost two api requests (2,000); now the key gate stops all but a burst at the edge.
  assert.ok(apiRequests <= 150, `${apiRequests} api requests`)
  assert.deepEqual([...statuses.keys()].sort(), ['401 INVALID_API_KEY', '429 API_KEY_LOOKUPS_EXCEEDED'])
  // Another address is not held back by this one, and a valid key still reads.
  const other = await getFrom(`${edge}/api/v1/leads?limit=1`, SERVICE_HEADERS, '127.0.0.8')
  assert.equal(other.status, 200)
})

test('the edge answers NGINX\'s own errors with the platform\'s JSON error body', async () => {
  const long = await getFrom(`${edge}/api/v1/leads?q=${'x'.repeat(9000)}`, {})
  assert.equal(long.status, 414)
  assertErrorBody(long, 'URI too long')
  const limited = await getFrom(`${edge}/api/v1/leads?limit=1`, { 'x-api-key': 'not-a-key' })
  assert.equal(limited.status, 401)
  assert.equal(assertErrorBody(limited, 'invalid key').code, 'INVALID_API_KEY')
})

/** An api instance of its own behind an NGINX of its own, for tests that take every api instance down. */
async function isolatedEdge (local: Array<() => unknown>, dataServicePort?: number): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('edge-down')}:`, TRUST_PROXY: '127.0.0.1/32' }))
  const apiPort = await freePort()
  await app.listen({ host: '127.0.0.1', port: apiPort })
  local.push(() => app.close())
  const [publicPort, statusPort, dataPort, orchestratorPort, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const prefix = preparePrefix(templateConfig({ api: [apiPort], dataService: dataServicePort ?? dataPort, orchestrator: orchestratorPort, publicPort, statusPort, keyGatePort }))
  await startNginx({ after: (fn) => { local.push(fn) } }, prefix, publicPort)
  return { app, url: `http://127.0.0.1:${publicPort}` }
}

test('after a revocation, with every api instance down, the revoked key reads no cached lead once its 5 s verdict is over: the edge fails closed with JSON', async () => {
  const local: Array<() => unknown> = []
  try {
    const { app, url } = await isolatedEdge(local)
    const { id, key } = await app.apiKeys.mint('revoked at the edge', ['leads:read'])
    const path = `${url}/api/v1/leads?state=CA&limit=5`
    const first = await getFrom(path, { 'x-api-key': key })
    const verdictAt = Date.now()
    assert.equal(first.status, 200)
    assert.match(first.body, /@example\.com/)
    assert.equal((await getFrom(path, { 'x-api-key': key })).headers['x-cache-status'], 'HIT')
    await app.apiKeys.revoke(id)
    // Every api instance down: a crash, not a graceful stop.
    app.server.close()
    app.server.closeAllConnections()
    // Watched for 7 s past the verdict's 5 s, which NGINX counts in whole seconds, so up to 6 s (the failure served
    // cached leads for the whole 45 s watched).
    const answers: Array<{ at: number, status: number, cache: string }> = []
    while (Date.now() - verdictAt < 14_000) {
      const at = Date.now() - verdictAt
      const res = await getFrom(path, { 'x-api-key': key })
      answers.push({ at, status: res.status, cache: String(res.headers['x-cache-status'] ?? '') })
      if (res.status !== 200) assertErrorBody(res, `after ${at} ms`)
      if (at > 7000) {
        assert.notEqual(res.status, 200, `a cached answer ${at} ms after the verdict: ${res.headers['x-cache-status'] as string}`)
        assert.doesNotMatch(res.body, /@example\.com/)
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const closed = answers.filter((a) => a.at > 7000)
    assert.ok(closed.length >= 10, `${closed.length} answers after the verdict expired`)
    assert.deepEqual([...new Set(closed.map((a) => a.status))], [503])
  } finally {
    for (const fn of local.reverse()) await fn()
  }
})

test('with every api instance down, every edge error is the platform\'s JSON error body, never an HTML page', async () => {
  const local: Array<() => unknown> = []
  try {
    const { app, url } = await isolatedEdge(local)
    // A valid key NGINX has no verdict for: within a verdict's 5 s it would be served from the cache, as it should.
    const { key } = await app.apiKeys.mint('edge down', ['leads:read', 'admin'])
    await app.close()
    const cases: Array<[string, string, Record<string, string>]> = [
      ['GET', '/api/v1/leads?limit=1', {}],
      ['GET', '/api/v1/leads?limit=1', { 'x-api-key': key }],
      ['GET', '/api/v1/leads?limit=2', { 'x-api-key': inventedKey() }],
      ['GET', `/api/v1/leads/${leadIds[0] ?? ''}`, { 'x-api-key': key }],
      ['POST', '/api/v1/leads', { 'x-api-key': key }],
      ['GET', '/api/v1/admin/cache', { 'x-api-key': key }],
      ['GET', '/data/v1/reports/summary', { 'x-api-key': key }],
      ['GET', '/orchestrator/v1/agents', { 'x-api-key': key }],
      ['GET', '/static/app.css', {}],
      ['GET', '/uploads/a.png', {}],
      ['GET', '/nowhere', {}]
    ]
    for (const [method, path, headers] of cases) {
      const res = await getFrom(`${url}${path}`, headers, '127.0.0.1', method)
      assert.ok(res.status >= 400, `${method} ${path}: ${res.status} ${String(res.headers['x-cache-status'])} ${res.body.slice(0, 200)}`)
      assertErrorBody(res, `${method} ${path}`)
    }
  } finally {
    for (const fn of local.reverse()) await fn()
  }
})

test('through NGINX, invented keys on /data/ and /orchestrator/ meet the same verdicts and key gate: none reaches those services', async (t) => {
  let reached = 0
  const onRequest = (): void => { reached++ }
  for (const app of others) app.server.on('request', onRequest)
  t.after(() => { for (const app of others) app.server.off('request', onRequest) })
  const statuses = new Map<string, number>()
  for (let i = 0; i < 200; i++) {
    const path = i % 2 === 0 ? '/data/v1/reports/leads?groupBy=day' : `/orchestrator/v1/leads/${leadIds[0] ?? ''}/score`
    const res = await getFrom(`${edge}${path}`, { 'x-api-key': inventedKey() }, '127.0.0.9')
    const { code } = assertErrorBody(res, path)
    statuses.set(`${res.status} ${code}`, (statuses.get(`${res.status} ${code}`) ?? 0) + 1)
  }
  assert.deepEqual([...statuses.keys()].sort(), ['401 INVALID_API_KEY', '429 API_KEY_LOOKUPS_EXCEEDED'])
  assert.equal(reached, 0, 'answered at the edge')
  const valid = await getFrom(`${edge}/data/v1/reports/leads?groupBy=day`, SERVICE_HEADERS, '127.0.0.10')
  assert.notEqual(valid.status, 401)
  assert.equal(reached, 1, 'a valid key goes through')
})

test('with the api down, a request to the data-service has no verdict and goes on: the data-service decides it', async () => {
  const seen: string[] = []
  const stand = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`)
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}')
  })
  const port = await freePort()
  await new Promise<void>((resolve) => stand.listen(port, '127.0.0.1', resolve))
  const local: Array<() => unknown> = [() => { stand.close() }]
  try {
    const { app, url } = await isolatedEdge(local, port)
    await app.close()
    const res = await getFrom(`${url}/data/v1/reports/leads?groupBy=day`, { 'x-api-key': inventedKey() })
    assert.equal(res.status, 200)
    assert.deepEqual(seen, ['GET /data/v1/reports/leads?groupBy=day'])
  } finally {
    for (const fn of local.reverse()) await fn()
  }
})

test('a phone or name a caller puts in a URL reaches no line of NGINX\'s access log: no query string, no path segment that is not a route\'s word or a uuid, no Referer', async () => {
  const name = 'AnnEdgeLee'
  const phone = '5551234567'
  const id = leadIds[0] ?? ''
  const sent: Array<[string, string]> = [
    [`/api/v1/leads?name=${name}&phone=%2B1${phone}&status=new`, '"GET /api/v1/leads HTTP/1.1"'],
    [`/api/v1/leads/${name}/activities`, '"GET /api/v1/leads/[REDACTED] HTTP/1.1"'],
    [`/api/v1/leads/${id}/activities?cursor=${name}`, `"GET /api/v1/leads/${id}/activities HTTP/1.1"`],
    [`/nowhere/${phone}`, '"GET /[REDACTED] HTTP/1.1"'],
    [`/static/${name}.js`, '"GET /static/[REDACTED] HTTP/1.1"']
  ]
  for (const [url] of sent) await (await fetch(`${edge}${url}`, { headers: { ...SERVICE_HEADERS, referer: `${edge}/quote/?name=${name}` } })).arrayBuffer()
  // Each worker buffers its lines for up to a second.
  let text = ''
  for (let i = 0; i < 60 && !sent.every(([, line]) => text.includes(line)); i++) {
    await sleep(100)
    text = readFileSync(accessLog, 'utf8')
  }
  for (const [url, line] of sent) assert.ok(text.includes(line), `${url} logged as ${line}: ${text}`)
  for (const value of [name, phone]) assert.ok(!text.includes(value), `${value} reached NGINX's access log: ${text}`)
})

test('a name or phone a caller sends as User-Agent or as the request method reaches no line of NGINX\'s access log', async () => {
  const name = 'AnnAgentLee'
  const phone = '5557654321'
  const sent = [
    { method: 'GET', url: '/api/v1/leads?limit=1&agent=1', ua: `${name} ${phone}`, line: '"GET /api/v1/leads HTTP/1.1"' },
    { method: name.toUpperCase(), url: '/api/v1/leads?limit=1&method=1', ua: 'curl/8.5.0', line: '"[REDACTED] /api/v1/leads HTTP/1.1"' }
  ]
  for (const { method, url, ua } of sent) await (await fetch(`${edge}${url}`, { method, headers: { ...SERVICE_HEADERS, 'user-agent': ua } })).arrayBuffer()
  let text = ''
  for (let i = 0; i < 60 && !sent.every(({ line }) => text.includes(line)); i++) {
    await sleep(100)
    text = readFileSync(accessLog, 'utf8')
  }
  for (const { url, line } of sent) assert.ok(text.includes(line), `${url} logged as ${line}: ${text}`)
  for (const value of [name.toLowerCase(), phone]) assert.ok(!text.toLowerCase().includes(value), `${value} reached NGINX's access log: ${text}`)
})

test('NGINX\'s request id ($request_id) is the service\'s request id; one a caller sends, holding a name or phone, reaches neither', async () => {
  const res = await fetch(`${edge}/api/v1/leads?limit=1&state=NV`, { headers: { ...SERVICE_HEADERS, 'x-request-id': 'Ann.Lee.5551234567', 'x-test-request-id': '1' } })
  await res.arrayBuffer()
  assert.equal(res.status, 200)
  const edgeId = res.headers.get('x-request-id') ?? ''
  assert.match(edgeId, /^[0-9a-f]{32}$/)
  assert.deepEqual(apis.flatMap((a) => a.requestIds), [edgeId], 'the api took NGINX\'s id as its request id')
})

test('a caller\'s trace context (traceparent, tracestate, baggage), which may spell a name or phone, reaches no service through NGINX: every proxied location drops it', async () => {
  const res = await fetch(`${edge}/api/v1/leads?limit=1&state=WA`, {
    headers: { ...SERVICE_HEADERS, 'x-test-trace': '1', traceparent: '00-00000000000000000000005551234567-0000005551234567-01', tracestate: 'lead=Ann.Lee.5551234567', baggage: 'email=ann%40example.com' }
  })
  await res.arrayBuffer()
  assert.equal(res.status, 200)
  assert.deepEqual(apis.flatMap((a) => a.traceHeaders), [JSON.stringify([undefined, undefined, undefined])])
  // Every location that proxies either takes proxy.conf, which drops them, or drops them itself.
  const conf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
  const proxied = conf.split(/\n\s*location /).slice(1).map((block) => block.slice(0, block.search(/\n\s{4}\}/))).filter((block) => block.includes('proxy_pass'))
  assert.ok(proxied.length >= 10)
  for (const block of proxied) assert.ok(block.includes('include proxy.conf;') || ['traceparent', 'tracestate', 'baggage'].every((h) => block.includes(`proxy_set_header ${h} "";`)), block.split('\n')[0])
  assert.match(readFileSync(join(NGINX_DIR, 'proxy.conf'), 'utf8'), /proxy_set_header traceparent "";\nproxy_set_header tracestate "";\nproxy_set_header baggage "";/)
})

test('a phone or name in a URL NGINX refuses (a body over its limit, a request over its rate limit) reaches no line of NGINX\'s error log', async () => {
  const name = 'AnnErrorLee'
  const phone = '5559876543'
  // Over client_max_body_size: refused on its Content-Length alone, before any body is read.
  const tooLarge = await new Promise<string>((resolve, reject) => {
    const req = httpRequest(`${edge}/api/v1/leads/${name}?phone=%2B1${phone}`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/json', 'content-length': String(200 * 1024 * 1024) } }, (res) => {
      res.resume()
      resolve(String(res.statusCode))
      req.destroy()
    })
    req.on('error', reject)
    req.flushHeaders()
  })
  assert.equal(tooLarge, '413')
  // The admin routes' strict limit (10 a minute, 5 of burst), already spent by an earlier test or by these.
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await getFrom(`${edge}/api/v1/admin/${name}?phone=${phone}`, {})).status)
  assert.ok(statuses.includes(429), statuses.join(' '))
  const text = readFileSync(errorLog, 'utf8')
  for (const value of [name, phone]) assert.ok(!text.includes(value), `${value} reached NGINX's error log: ${text.slice(-2000)}`)
})

test('every word of every route of the three services is one NGINX\'s access log shows', () => {
  const conf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
  const listed = /\(\?:\/\(\?:([^)]*)\|\[0-9a-fA-F\]\{8\}/.exec(conf)?.[1]?.split('|').map((w) => w.replace(/\\/g, ''))
  assert.ok(listed && listed.length > 0, 'the access log map lists words')
  const words = new Set<string>()
  for (const app of [...apis.map((a) => a.app), ...others]) {
    for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
      const path = line.replace(/^[\s│├└─]+/, '').replace(/ \(.*\)$/, '')
      for (const segment of path.split('/')) if (segment !== '' && !segment.includes(':') && !segment.includes('*')) words.add(segment)
    }
  }
  assert.ok(words.has('leads') && words.has('route-batch'), [...words].join(' '))
  assert.deepEqual([...words].filter((w) => !listed.includes(w)), [], 'words missing from the access log map in deploy/nginx/nginx.conf')
})
