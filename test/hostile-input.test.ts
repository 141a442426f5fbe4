// A hostile caller against the three services as production runs them (the preload, every log level on stdout, real
// PostgreSQL and Redis): malformed bodies, odd content types, numbers past every limit, broken URLs and headers, keys
// of every wrong shape, methods no route takes, and the same write sent many times at once. Each answer must be a
// success or a 4xx with the documented body and a documented code; no service may stop; no log line may hold the
// personal data or the key that were sent.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { projectRoot } from '../services/platform/paths.js'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, uniqueName, type TestSchema } from './helpers/database.js'
import { startOtlpReceiver, startTracedService } from './helpers/otlp.js'
import { insertAgents, insertLeads } from './helpers/services.js'

const NAME = 'Ann.Lee'
const EMAIL = 'ann.lee@example.com'
const PHONE = '555-123-4567'
const lead = { firstName: NAME, lastName: 'Lee', email: EMAIL, phone: PHONE, product: 'auto', state: 'CA' }

interface Service { name: string, url: string, stdout: () => string, stderr: () => string }
interface Answer { status: number, head: string, body: string, hung?: boolean }

const cleanups: Array<() => unknown> = []
const collector = { after: (fn: () => unknown) => { cleanups.push(fn) } }
let db: TestSchema
let api: Service
let data: Service
let orchestrator: Service
let key = ''
let leadIds: string[] = []

const documentedCodes = new Set([...readFileSync(join(projectRoot, 'docs/errors.md'), 'utf8').matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]))

/** One request written as bytes on its own connection, so that nothing (fetch, undici) cleans it up first. */
async function send (url: string, request: Buffer | string, waitMs = 5000): Promise<Answer> {
  const { hostname, port } = new URL(url)
  return await new Promise((resolve) => {
    const socket = connect(Number(port), hostname)
    let received = Buffer.alloc(0)
    let settled = false
    const finish = (hung = false): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const text = received.toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      const head = end >= 0 ? text.slice(0, end) : text
      let body = end >= 0 ? text.slice(end + 4) : ''
      if (/^transfer-encoding: chunked/im.test(head)) body = body.replace(/^[0-9a-f]+\r\n|\r\n[0-9a-f]+\r\n/gi, '').replace(/\r\n$/, '')
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body, hung })
    }
    const timer = setTimeout(() => { finish(true) }, waitMs)
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      // A whole answer is enough: a connection kept alive (an upgrade request asked for no close) is not a hang.
      const end = received.indexOf('\r\n\r\n')
      const length = /^content-length: (\d+)/im.exec(received.subarray(0, Math.max(end, 0)).toString('latin1'))?.[1]
      if (end >= 0 && length !== undefined && received.length >= end + 4 + Number(length) && !/^HTTP\/1\.1 1\d\d/.test(received.toString('latin1'))) finish()
    })
    socket.on('end', () => { finish() })
    socket.on('close', () => { finish() })
    socket.on('error', () => { finish() })
    socket.write(request)
  })
}

/** An HTTP/1.1 request with these headers (an array repeats one); content-length added for a body unless given. */
function http (method: string, path: string, headers: Record<string, string | string[]> = {}, body?: string | Buffer): Buffer {
  const bytes = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body)
  const all: Record<string, string | string[]> = { host: '127.0.0.1', connection: 'close', ...headers }
  if (body !== undefined && !Object.keys(all).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) all['content-length'] = String(bytes.length)
  let text = `${method} ${path} HTTP/1.1\r\n`
  for (const [name, value] of Object.entries(all)) for (const v of [value].flat()) text += `${name}: ${v}\r\n`
  return Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), bytes])
}

/** What is wrong with an answer: a 5xx, no answer, a hang, an error body that is not the platform's. */
function problems (answer: Answer, method: string): string[] {
  const found: string[] = []
  if (answer.hung) found.push('no whole answer in time')
  if (answer.status === 0) found.push('connection closed without an answer')
  if (answer.status >= 500) found.push(`status ${answer.status}`)
  if (answer.status >= 400 && method !== 'HEAD') {
    try {
      const body = JSON.parse(answer.body) as Record<string, unknown>
      for (const field of ['statusCode', 'code', 'error', 'message']) if (!(field in body)) found.push(`no ${field} in the body`)
      if (body.statusCode !== answer.status) found.push(`body statusCode ${String(body.statusCode)}`)
      if (typeof body.code === 'string' && !documentedCodes.has(body.code)) found.push(`code ${body.code} is not in docs/errors.md`)
    } catch {
      found.push(`body is not JSON: ${answer.body.slice(0, 80)}`)
    }
  }
  return found
}

/** Sends every request (a few at a time) and returns each one whose answer has a problem, with what it was. */
async function sweep (requests: Array<{ service: Service, label: string, method: string, bytes: Buffer }>): Promise<string[]> {
  const failures: string[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < requests.length) {
      const r = requests[next++] as (typeof requests)[number]
      const answer = await send(r.service.url, r.bytes)
      const found = problems(answer, r.method)
      if (found.length > 0) failures.push(`${r.service.name} ${r.label}: ${answer.status} ${found.join(', ')}`)
    }
  }
  await Promise.all(Array.from({ length: 6 }, worker))
  return failures
}

async function mintKey (): Promise<string> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist/scripts/keys.js'), 'mint', '--name', 'hostile', '--scopes', 'leads:read,leads:write,leads:create,leads:import,reports:read,routing,admin'], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  await new Promise((resolve) => child.on('close', resolve))
  const minted = /^lck_\S+$/m.exec(stdout)?.[0]
  assert.ok(minted, `the keys CLI printed no key: ${stdout}`)
  return minted
}

before(async () => {
  db = await createTestSchema()
  await insertAgents(db, [{ name: 'Agent', capacity: 100 }])
  leadIds = await insertLeads(db, 2)
  key = await mintKey()
  const otlp = await startOtlpReceiver(collector)
  const env = {
    DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, LOG_LEVEL: 'trace',
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('hostile')}:`,
    EVENTS_CHANNEL: uniqueName('hostile-events'), PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    // Every answer is checked for what the route says, not for the limiter's 429.
    RATE_LIMIT_ENABLED: 'false'
  }
  const start = async (name: string, entry: string, extra: Record<string, string> = {}): Promise<Service> =>
    ({ name, ...(await startTracedService(collector, name, entry, otlp.url, { ...env, ...extra })) })
  // The orchestrator needs the data-service's URL; the api starts meanwhile.
  const apiStarted = start('api', 'dist/services/api/main.js')
  data = await start('data-service', 'dist/services/data-service/main.js')
  ;[api, orchestrator] = await Promise.all([apiStarted, start('orchestrator', 'dist/services/orchestrator/main.js', { DATA_SERVICE_URL: data.url })])
})

after(async () => {
  for (const fn of cleanups.reverse()) await fn()
  await db.drop()
})

test('a method Fastify reads a body for (QUERY) sent without a content type answers 400 BAD_REQUEST, not Fastify\'s own FST_ERR_ROUTE_MISSING_CONTENT_TYPE', async () => {
  for (const [service, path] of [[api, '/api/v1/leads'], [data, '/data/v1/reports/leads'], [orchestrator, '/orchestrator/v1/route-batch']] as const) {
    const answer = await send(service.url, http('QUERY', path, { 'x-api-key': key }))
    assert.equal(answer.status, 400, `${service.name}: ${answer.body}`)
    assert.equal((JSON.parse(answer.body) as { code: string }).code, 'BAD_REQUEST', `${service.name}: ${answer.body}`)
  }
})

test('a CONNECT request is answered 404 NOT_FOUND with the platform\'s body, not a connection closed without a word', async () => {
  for (const service of [api, data, orchestrator]) {
    for (const target of [`127.0.0.1:${new URL(service.url).port}`, `${EMAIL}:443`]) {
      const answer = await send(service.url, http('CONNECT', target, { host: target, 'x-api-key': key }))
      assert.equal(answer.status, 404, `${service.name} CONNECT ${target}: ${answer.head}`)
      assert.deepEqual(problems(answer, 'CONNECT'), [])
      assert.equal((JSON.parse(answer.body) as { code: string }).code, 'NOT_FOUND')
      assert.ok(!answer.body.includes(EMAIL), answer.body)
    }
    assert.equal((await fetch(`${service.url}/health/live`)).status, 200)
  }
})

test('an HTTP/1.1 request without a Host header is answered 400 MALFORMED_REQUEST with the platform\'s body, not Node\'s empty 400', async () => {
  for (const [service, path] of [[api, '/api/v1/leads'], [data, '/health/live'], [orchestrator, '/orchestrator/v1/route-batch']] as const) {
    const answer = await send(service.url, `GET ${path} HTTP/1.1\r\nx-api-key: ${key}\r\nconnection: close\r\n\r\n`)
    assert.equal(answer.status, 400, `${service.name}: ${answer.head}`)
    assert.deepEqual(problems(answer, 'GET'), [])
    assert.equal((JSON.parse(answer.body) as { code: string }).code, 'MALFORMED_REQUEST')
  }
  // HTTP/1.0 has no Host requirement: such a request is answered as any other.
  assert.equal((await send(api.url, 'GET /health/live HTTP/1.0\r\n\r\n')).status, 200)
})

test('an Expect header other than 100-continue is answered 417 EXPECTATION_FAILED with the platform\'s body, not Node\'s empty 417', async () => {
  for (const [service, path] of [[api, '/api/v1/leads'], [data, '/data/v1/imports/leads'], [orchestrator, '/orchestrator/v1/route-batch']] as const) {
    const answer = await send(service.url, http('POST', path, { 'x-api-key': key, 'content-type': 'application/json', expect: `${NAME}-${PHONE}` }, JSON.stringify(lead)))
    assert.equal(answer.status, 417, `${service.name}: ${answer.head}`)
    assert.deepEqual(problems(answer, 'POST'), [])
    assert.equal((JSON.parse(answer.body) as { code: string }).code, 'EXPECTATION_FAILED')
    assert.ok(!answer.body.includes(NAME), answer.body)
  }
  // 100-continue is still met: the body is read and the request answered.
  const answer = await send(api.url, http('POST', '/api/v1/leads', { 'content-type': 'application/json', expect: '100-continue' }, '{}'))
  assert.match(answer.head, /^HTTP\/1\.1 100 Continue/)
})

test('a WebSocket upgrade sent to an orchestrator route that is no WebSocket is answered as HTTP, and its URL (a name, email, phone or key in the query) reaches no log line', async () => {
  const upgrade = { 'x-api-key': key, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
  const query = `?${NAME}=${EMAIL}&tel=${PHONE}&api_key=${key}`
  for (const path of [`/orchestrator/v1/leads/${leadIds[0] as string}/score`, '/orchestrator/v1/openapi.json']) {
    const answer = await send(orchestrator.url, http('GET', path + query, upgrade), 2000)
    assert.notEqual(answer.status, 101, `${path}: ${answer.head}`)
    assert.deepEqual(problems(answer, 'GET'), [])
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const logged = orchestrator.stdout().split('\n').filter((l) => [NAME, EMAIL, PHONE, key].some((m) => l.includes(m)))
  assert.deepEqual(logged.map((l) => l.slice(0, 300)), [])
})

test('a WebSocket handshake the events route cannot accept (bad key, version, protocol or Upgrade) is answered 400 WEBSOCKET_HANDSHAKE_INVALID with the platform\'s body, not ws\'s text/html', async () => {
  const valid = { 'x-api-key': key, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
  const wrongs: Array<Record<string, string>> = [{ 'sec-websocket-key': `${NAME}==` }, { 'sec-websocket-version': '99' }, { 'sec-websocket-protocol': 'a b,,' }, { upgrade: 'h2c' }]
  for (const wrong of wrongs) {
    const answer = await send(orchestrator.url, http('GET', '/orchestrator/v1/events', { ...valid, ...wrong }), 2000)
    assert.equal(answer.status, 400, `${JSON.stringify(wrong)}: ${answer.head}`)
    assert.deepEqual(problems(answer, 'GET'), [])
    assert.equal((JSON.parse(answer.body) as { code: string }).code, 'WEBSOCKET_HANDSHAKE_INVALID')
    assert.ok(!answer.body.includes(NAME), answer.body)
  }
  assert.equal((await send(orchestrator.url, http('GET', '/orchestrator/v1/events', valid), 1000)).status, 101)
})

test('a plain GET of the events WebSocket is answered 426 WEBSOCKET_UPGRADE_REQUIRED with the platform\'s body, not an empty 404', async () => {
  const answer = await send(orchestrator.url, http('GET', '/orchestrator/v1/events', { 'x-api-key': key }))
  assert.equal(answer.status, 426, answer.head)
  assert.deepEqual(problems(answer, 'GET'), [])
  assert.equal((JSON.parse(answer.body) as { code: string }).code, 'WEBSOCKET_UPGRADE_REQUIRED')
  assert.match(answer.head, /^upgrade: websocket$/im)
})

test('two imports of the same leads in opposite orders at once both succeed: no deadlock answered 503 IMPORT_INTERRUPTED', async () => {
  for (let round = 0; round < 3; round++) {
    const rows = Array.from({ length: 400 }, (_, i) => `Ann,Lee,import${round}.${i}@example.com,${PHONE},auto,CA`)
    const header = 'firstName,lastName,email,phone,product,state\n'
    const files = [header + rows.join('\n') + '\n', header + [...rows].reverse().join('\n') + '\n']
    const answers = await Promise.all(files.map(async (csv) => {
      const res = await fetch(`${data.url}/data/v1/imports/leads`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'text/csv' }, body: csv })
      return { status: res.status, body: await res.text() }
    }))
    for (const a of answers) assert.equal(a.status, 200, `round ${round}: ${a.body.slice(0, 300)}`)
  }
})

test('every route of every service answers hostile input with a documented 4xx JSON error, never a 5xx, a hang or a dropped connection', async (t) => {
  const id = leadIds[0] as string
  const routes: Array<[Service, string, string]> = [
    [api, 'GET', '/api/v1/leads'], [api, 'POST', '/api/v1/leads'], [api, 'GET', `/api/v1/leads/${id}`], [api, 'PATCH', `/api/v1/leads/${id}`],
    [api, 'GET', `/api/v1/leads/${id}/activities`], [api, 'GET', '/api/v1/admin/cache'], [api, 'GET', '/api/v1/admin/rate-limit'],
    [api, 'GET', '/api/v1/admin/pool'], [api, 'GET', '/api/v1/admin/queries'], [api, 'GET', '/api/v1/edge/auth'], [api, 'GET', '/quote/'],
    [api, 'GET', '/static/lead-form.000000000000.js'], [api, 'GET', '/health/ready'], [api, 'GET', '/metrics'], [api, 'GET', '/api/v1/openapi.json'],
    [data, 'POST', '/data/v1/imports/leads'], [data, 'GET', '/data/v1/reports/leads'], [data, 'GET', '/data/v1/reports/funnel'],
    [data, 'GET', '/data/v1/reports/agents'], [data, 'GET', '/data/v1/leads/unassigned'], [data, 'GET', `/data/v1/leads/${id}`],
    [orchestrator, 'GET', `/orchestrator/v1/leads/${id}/score`], [orchestrator, 'POST', '/orchestrator/v1/route-batch']
  ]
  const json = { 'content-type': 'application/json' }
  const bodies: Record<string, string | Buffer> = {
    'invalid JSON': `{"firstName": "${NAME}", "email": "${EMAIL}"`,
    'nested 20,000 deep': '['.repeat(20000) + ']'.repeat(20000),
    'an array of 100,000 items': `{"firstName":[${'1,'.repeat(100000)}1]}`,
    'duplicate keys': `{"firstName":"x","firstName":"${NAME}","lastName":"Lee","email":"${EMAIL}","product":"auto","state":"CA"}`,
    '__proto__': `{"__proto__":{"admin":true},"firstName":"${NAME}","email":"${EMAIL}"}`,
    'constructor.prototype': `{"constructor":{"prototype":{"admin":true}},"firstName":"${NAME}"}`,
    'NUL in a name': JSON.stringify({ ...lead, firstName: 'Ann\u0000Lee' }),
    'a lone surrogate': `{"firstName":"Ann\\ud800Lee","lastName":"Lee","email":"${EMAIL}","product":"auto","state":"CA"}`,
    'an RTL override': JSON.stringify({ ...lead, firstName: 'Ann\u202eeeL' }),
    'a 100,000-character name': JSON.stringify({ ...lead, firstName: 'A'.repeat(100000) }),
    'numbers past every limit': '{"limit":1e309,"score":1e309,"minScore":-1}',
    '2^53+1': '{"limit":9007199254740993,"score":9007199254740993}',
    'NaN strings': '{"limit":"NaN","score":"Infinity"}',
    'a bare string': `"${NAME} ${EMAIL}"`,
    null: 'null',
    'an invalid email, phone and state': JSON.stringify({ ...lead, email: 'ann.lee@example', phone: `${PHONE}x`, state: NAME }),
    'personal data as keys': JSON.stringify({ [EMAIL]: 1, [NAME]: 2, [PHONE]: 3 }),
    'UTF-16 bytes': Buffer.from(JSON.stringify(lead), 'utf16le')
  }
  const contentTypes = ['text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16',
    `${NAME}/${EMAIL}`, 'application/jsonx']
  const requests: Array<{ service: Service, label: string, method: string, bytes: Buffer }> = []
  const add = (service: Service, label: string, method: string, path: string, headers: Record<string, string | string[]>, body?: string | Buffer): void => {
    requests.push({ service, label: `${method} ${path.slice(0, 60)} (${label})`, method, bytes: http(method, path, headers, body) })
  }
  for (const [service, method, path] of routes) {
    const auth = { 'x-api-key': key }
    const write = method === 'GET' ? 'POST' : method
    if (method !== 'GET') for (const [label, body] of Object.entries(bodies)) add(service, label, method, path, { ...auth, ...json }, body)
    for (const type of contentTypes) add(service, `content-type ${type}`, write, path, { ...auth, 'content-type': type }, JSON.stringify(lead))
    add(service, 'no content type', write, path, auth, JSON.stringify(lead))
    add(service, 'empty JSON body', write, path, { ...auth, ...json }, '')
    add(service, 'content-length past the body limit', write, path, { ...auth, ...json, 'content-length': '2000000' }, '{}')
    add(service, 'content-length beyond any number', write, path, { ...auth, ...json, 'content-length': '99999999999999999999' }, '{}')
    add(service, 'content-length and chunked', write, path, { ...auth, ...json, 'content-length': '2', 'transfer-encoding': 'chunked' }, '2\r\n{}\r\n0\r\n\r\n')
    for (const other of ['PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'HEAD']) add(service, other, other, path, auth)
    add(service, 'repeated parameters', method, `${path}?limit=1&limit=2&status=new&status=lost&from=2026-01-01&from=2026-01-02`, auth)
    add(service, 'unknown parameters', method, `${path}?${NAME}=${EMAIL}&tel5551234567=1`, auth)
    add(service, 'bad percent-escapes', method, `${path}?limit=%&x=%E0%A4%A&status=%C0%AF`, auth)
    add(service, 'numbers past the limits', method, `${path}?limit=1e309&minScore=-0&from=0000-01-01&to=9999-12-31`, auth)
    add(service, 'NaN and 2^53+1', method, `${path}?limit=NaN&minScore=9007199254740993`, auth)
    add(service, 'bracket parameters', method, `${path}?limit[]=1&status[a]=new&__proto__[x]=1&constructor=1`, auth)
    add(service, 'a 70,000-character query', method, `${path}?cursor=${'a'.repeat(70000)}`, auth)
    add(service, 'a 70,000-character header', method, path, { ...auth, 'x-filler': 'a'.repeat(70000) })
    add(service, 'dot segments', method, `${path}/..%2f..%2fetc%2fpasswd`, auth)
    add(service, 'NUL and unicode in the path', method, `${path}%00${encodeURIComponent('Ann\u202eLée')}`, auth)
    add(service, 'a malformed key', method, path, { 'x-api-key': `${NAME} ${PHONE}` })
    add(service, 'a 10,000-character key', method, path, { 'x-api-key': `lck_${'A'.repeat(10000)}` })
    add(service, 'the key surrounded by spaces', method, path, { 'x-api-key': ` ${key} ` })
    add(service, 'the key in capitals', method, path, { 'X-API-KEY': key })
    add(service, 'the key twice', method, path, { 'x-api-key': [key, key] })
    add(service, 'an empty key', method, path, { 'x-api-key': '' })
    add(service, 'a wrong service key', method, path, { 'x-service-key': PHONE })
    add(service, 'If-None-Match lists', method, path, { ...auth, 'if-none-match': `*, W/"x", "${NAME}", ${'"a",'.repeat(1000)}` })
    add(service, 'If-Match and dates that are not dates', method, path, { ...auth, 'if-match': '"nope"', 'if-unmodified-since': NAME, 'if-modified-since': PHONE })
    add(service, 'Range past the end', method, path, { ...auth, range: 'bytes=999999999-' })
    add(service, 'a thousand ranges', method, path, { ...auth, range: `bytes=0-1,${'4-5,'.repeat(1000)}` })
    add(service, 'odd Accept and Accept-Encoding', method, path, { ...auth, accept: 'text/html;q=0, application/xml', 'accept-encoding': 'br;q=NaN, gzip;q=-1, *;q=0, identity;q=0' })
    add(service, 'a name and phone as Host, X-Forwarded-For and X-Request-Id', method, path, { ...auth, host: EMAIL, 'x-forwarded-for': `${NAME}, ${PHONE}`, 'x-request-id': `${NAME}.${PHONE}` })
  }
  const failures = await sweep(requests)
  t.diagnostic(`${requests.length} requests`)
  assert.deepEqual(failures, [], `${failures.length} of ${requests.length} answers:\n${failures.slice(0, 40).join('\n')}`)
  for (const service of [api, data, orchestrator]) {
    assert.equal((await fetch(`${service.url}/health/live`)).status, 200, `${service.name} stopped: ${service.stderr().slice(-2000)}`)
  }
})

test('the same lead created 50 times at once is created once: one 201, then 409 LEAD_DUPLICATE, never a 5xx', async () => {
  const same = { ...lead, email: `ann.lee.${Date.now()}@example.com` }
  const statuses = await Promise.all(Array.from({ length: 50 }, async () => {
    const res = await fetch(`${api.url}/api/v1/leads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(same) })
    const body = await res.json() as { code?: string }
    return `${res.status} ${body.code ?? ''}`.trim()
  }))
  assert.equal(statuses.filter((s) => s === '201').length, 1, statuses.join(', '))
  assert.equal(statuses.filter((s) => s === '409 LEAD_DUPLICATE').length, 49, statuses.join(', '))
})

test('the same PATCH sent 50 times at once answers 200 every time and leaves one lead as asked', async () => {
  const id = leadIds[1] as string
  const statuses = await Promise.all(Array.from({ length: 50 }, async () => {
    const res = await fetch(`${api.url}/api/v1/leads/${id}`, { method: 'PATCH', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: '{"status":"contacted","score":42}' })
    await res.arrayBuffer()
    return res.status
  }))
  assert.deepEqual([...new Set(statuses)], [200])
  const [row] = await db.sql<{ status: string, score: number }>('SELECT status, score FROM leads WHERE id = $1', [id])
  assert.deepEqual(row, { status: 'contacted', score: 42 })
})

test('one lead routed 50 times at once is assigned once: one 200, the rest 409 LEAD_BUSY or ALREADY_ASSIGNED', async () => {
  // A lead of its own: the sweep's route-batch calls may have routed the others.
  const [id] = await insertLeads(db, 1)
  const answers = await Promise.all(Array.from({ length: 50 }, async () => {
    const res = await fetch(`${orchestrator.url}/orchestrator/v1/leads/${id}/route`, { method: 'POST', headers: SERVICE_HEADERS })
    const body = await res.json() as { code?: string }
    return `${res.status} ${body.code ?? ''}`.trim()
  }))
  assert.equal(answers.filter((a) => a === '200').length, 1, answers.join(', '))
  assert.deepEqual(answers.filter((a) => a !== '200' && a !== '409 LEAD_BUSY' && a !== '409 ALREADY_ASSIGNED'), [])
  const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM lead_assignments WHERE lead_id = $1', [id])
  assert.equal(row?.n, 1)
})

// Last: every test above sent the name, email, phone and key; the logs of all of them are searched.
test('no log line of any service holds the name, email, phone or key a hostile caller sent', () => {
  // lck_ + 12 characters of id + _ + the secret (base64url, which has _ of its own).
  const secret = key.slice('lck_'.length + 13)
  for (const service of [api, data, orchestrator]) {
    const lines = (service.stdout() + service.stderr()).split('\n')
    assert.ok(lines.length > 100, `${service.name} logged ${lines.length} lines`)
    for (const marker of [NAME, EMAIL, PHONE, '5551234567', secret, TEST_SERVICE_KEY]) {
      const found = lines.filter((l) => l.toLowerCase().includes(marker.toLowerCase()))
      assert.deepEqual(found.slice(0, 5).map((l) => l.slice(0, 400)), [], `${service.name} logged ${marker} on ${found.length} lines`)
    }
  }
})
