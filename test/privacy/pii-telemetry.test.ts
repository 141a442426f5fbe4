// The three services run as production runs them (the OpenTelemetry preload, OTLP/HTTP to a receiver started here,
// every log level on stdout), while a lead whose fields hold a marker is created, read, listed, patched, imported
// and routed, and every error path is taken with it. Then nothing they exported or logged may hold the marker.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { get, type IncomingHttpHeaders } from 'node:http'
import { SERVICE_HEADERS, TEST_SERVICE_KEY, createTestSchema, uniqueName, type TestSchema } from '../helpers/database.js'
import { startOtlpReceiver, startTracedService, waitForSpans, type OtlpExport, type ReceivedSpan } from '../helpers/otlp.js'
import { insertAgents } from '../helpers/services.js'

const LETTERS = 'ghjkmnpqrstvwxyz' // no hex digit: a marker cannot occur inside a trace or span id
const token = 'pii' + Array.from({ length: 12 }, () => LETTERS[randomInt(LETTERS.length)]).join('')
const phoneDigits = `555${randomInt(1000000, 9999999)}`
const lead = { firstName: `Ann${token}`, lastName: `Lee${token}`, email: `${token}@example.com`, phone: `+1${phoneDigits}`, product: 'auto', state: 'CA' }
// Well formed, unknown: refused like any key in a query string, and it must not be written down either.
const queryKey = `lck_${'A'.repeat(12)}_${token}${'x'.repeat(43 - token.length)}`
const queryToken = `tok${token}`
const MARKERS = [token, phoneDigits]
const SECRETS = [queryKey, queryToken, TEST_SERVICE_KEY]

const cleanups: Array<() => unknown> = []
const collector = { after: (fn: () => unknown) => { cleanups.push(fn) } }
let db: TestSchema
let exported: OtlpExport[] = []
let spans: ReceivedSpan[] = []
let logs: Record<string, string> = {}
const statuses: Record<string, number> = {}
let leadId = ''
// The request ids the services answered with to the requests that sent a name and phone as X-Request-Id.
const answeredRequestIds: string[] = []

async function call (label: string, url: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, { ...init, headers: { ...SERVICE_HEADERS, ...(init.headers as Record<string, string> | undefined) } })
  statuses[label] = res.status
  await res.arrayBuffer()
  return res
}

/** A GET with these headers, Host included (fetch sets its own Host): node:http. */
async function callWithHeaders (label: string, url: string, headers: Record<string, string>): Promise<IncomingHttpHeaders> {
  return await new Promise((resolve, reject) => {
    get(url, { headers: { ...SERVICE_HEADERS, ...headers } }, (res) => {
      statuses[label] = res.statusCode ?? 0
      res.resume().on('end', () => { resolve(res.headers) })
    }).on('error', reject)
  })
}

const json = (body: unknown): RequestInit => ({ body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } })

/** A body sent without content-length, so the data-service reads it as it streams (and can stop half way). */
function streamed (text: string, type: string): RequestInit {
  const bytes = new TextEncoder().encode(text)
  const body = new ReadableStream({
    start (controller) {
      for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.subarray(i, i + 512))
      controller.close()
    }
  })
  return { method: 'POST', body, headers: { 'content-type': type }, duplex: 'half' } as RequestInit
}

before(async () => {
  db = await createTestSchema()
  await insertAgents(db, [{ name: 'Agent', capacity: 5 }])
  const otlp = await startOtlpReceiver(collector)
  const env = {
    DATABASE_URL: db.url, DB_SCHEMA: db.schema, SERVICE_API_KEY: TEST_SERVICE_KEY, LOG_LEVEL: 'trace',
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', CACHE_PREFIX: `${uniqueName('pii')}:`,
    EVENTS_CHANNEL: uniqueName('pii-events'), IMPORT_MAX_BYTES: '2048',
    // Every answer is checked exactly: no load shedding on a busy test machine.
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    // Log records and metrics go to the receiver too: they must hold no marker either.
    OTEL_LOGS_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '500'
  }
  const api = await startTracedService(collector, 'api', 'dist/services/api/main.js', otlp.url, env)
  const data = await startTracedService(collector, 'data-service', 'dist/services/data-service/main.js', otlp.url, env)
  const orchestrator = await startTracedService(collector, 'orchestrator', 'dist/services/orchestrator/main.js', otlp.url, { ...env, DATA_SERVICE_URL: data.url })
  const leads = `${api.url}/api/v1/leads`

  // Create, read twice (cache fill, then hit), list, patch, read again.
  const created = await fetch(leads, { method: 'POST', ...json(lead), headers: { ...SERVICE_HEADERS, 'content-type': 'application/json' } })
  assert.equal(created.status, 201, api.stderr())
  const { id } = await created.json() as { id: string }
  leadId = id
  await call('read (fill)', `${leads}/${id}`)
  await call('read (hit)', `${leads}/${id}`)
  await call('list', `${leads}?limit=5`)
  await call('patch', `${leads}/${id}`, { method: 'PATCH', ...json({ firstName: `Bea${token}`, phone: `+44${phoneDigits}` }) })
  await call('read after patch', `${leads}/${id}`)

  // Validation errors, each holding the marker in what was sent.
  await call('invalid email', leads, { method: 'POST', ...json({ ...lead, email: `${token}@` }) })
  await call('invalid phone', leads, { method: 'POST', ...json({ ...lead, phone: `call ${token}` }) })
  await call('invalid state', leads, { method: 'POST', ...json({ ...lead, state: token }) })
  await call('marker as a property name', leads, { method: 'POST', ...json({ ...lead, [`${token}@example.com`]: 1 }) })
  await call('name as a body field name', leads, { method: 'POST', ...json({ ...lead, [lead.firstName]: 1 }) })
  await call('name as a patch field name', `${leads}/${id}`, { method: 'PATCH', ...json({ [lead.lastName]: 'x' }) })
  await call('invalid JSON', leads, { method: 'POST', ...json(`{"firstName": "Ann", "email": ${token}@example.com}`) })
  await call('invalid patch', `${leads}/${id}`, { method: 'PATCH', ...json({ lastName: '', email: `not-an-email-${token}` }) })
  await call('duplicate', leads, { method: 'POST', ...json({ ...lead, firstName: `Dup${token}` }) })

  // Imports: a good row, a row the CSV parser cannot read, a row that fails validation; NDJSON alike.
  const imports = `${data.url}/data/v1/imports/leads`
  const csv = [
    'firstName,lastName,email,phone,product,state',
    `Cid${token},Lee${token},csv.${token}@example.com,+1${phoneDigits},auto,CA`,
    `Dan,Lee,x"${token}@example.com",+1${phoneDigits},auto,CA`,
    `Eve${token},Lee,eve.${token}@,+1${phoneDigits},auto,CA`
  ].join('\n')
  await call('import CSV', imports, { method: 'POST', body: csv, headers: { 'content-type': 'text/csv' } })
  const ndjson = [
    JSON.stringify({ ...lead, email: `nd.${token}@example.com`, product: 'home' }),
    `{"firstName": "Fay${token}", "email": ${token}}`,
    JSON.stringify({ ...lead, email: `nd2.${token}@example.com`, [`${token}@example.com`]: true }),
    JSON.stringify({ ...lead, email: `nd3.${token}@example.com`, phone: `x${token}` })
  ].join('\n')
  await call('import NDJSON', imports, { method: 'POST', body: ndjson, headers: { 'content-type': 'application/x-ndjson' } })
  // Interrupted: past IMPORT_MAX_BYTES while streaming, with rejected rows already in its report.
  const padding = Array.from({ length: 60 }, (_, i) => `Pad,Row,pad${i}.${uniqueName('p')}@example.com,,auto,CA`)
  await call('interrupted import', imports, streamed([csv, ...padding].join('\n'), 'text/csv'))

  // Routing: routed, routed twice, nobody licensed, a batch; and the score read through the data-service.
  const orch = `${orchestrator.url}/orchestrator/v1`
  await call('score', `${orch}/leads/${id}/score`)
  await call('route', `${orch}/leads/${id}/route`, { method: 'POST' })
  await call('route again', `${orch}/leads/${id}/route`, { method: 'POST' })
  const unroutable = await fetch(leads, { method: 'POST', ...json({ ...lead, email: `life.${token}@example.com`, product: 'life' }), headers: { ...SERVICE_HEADERS, 'content-type': 'application/json' } })
  const { id: lifeId } = await unroutable.json() as { id: string }
  await call('route unroutable', `${orch}/leads/${lifeId}/route`, { method: 'POST' })
  await call('route batch', `${orch}/route-batch`, { method: 'POST', ...json({ limit: 10 }) })

  // A name or phone in a URL: a path segment of no route, a lead id, unknown query parameters (a phone as a name too),
  // declared filters' values that are not theirs; on every service.
  const name = encodeURIComponent(lead.firstName)
  const phone = encodeURIComponent(lead.phone)
  await call('url: name and phone in the path of no route', `${api.url}/api/v1/nowhere/${name}/${phoneDigits}`)
  await call('url: name as a lead id', `${leads}/${encodeURIComponent(lead.lastName)}`)
  await call('url: name and phone as unknown query parameters', `${leads}?name=${name}&phone=${phone}`)
  await call('url: phone as a query parameter\'s name', `${leads}?${phoneDigits}`)
  await call('url: name as a query parameter\'s name', `${leads}?${lead.firstName}=1&limit=5`)
  await call('url: name as a data-service query parameter\'s name', `${data.url}/data/v1/leads/unassigned?${lead.lastName}=1`)
  await call('url: name as an orchestrator query parameter\'s name', `${orch}/leads/${id}/score?${lead.firstName}`)
  await call('url: name and phone as filter values', `${leads}?status=${name}&limit=${phoneDigits}`)
  await call('url: name in a data-service filter', `${data.url}/data/v1/leads/unassigned?state=${name}&limit=${phoneDigits}`)
  await call('url: name as an orchestrator lead id', `${orch}/leads/${name}/score?phone=${phone}`)

  // A name and a phone in the headers a request line and its request id are made of: Host, Accept-Version, X-Request-Id.
  const nameAndPhone = { host: `${lead.firstName.toLowerCase()}.${phoneDigits}.example.com`, 'accept-version': lead.lastName, 'x-request-id': `${lead.firstName}.${phoneDigits}` }
  for (const [service, url] of [['api', `${leads}?limit=1`], ['data-service', `${data.url}/data/v1/leads/unassigned?limit=1`], ['orchestrator', `${orch}/leads/${id}/score`]] as const) {
    const headers = await callWithHeaders(`headers: name and phone as Host, Accept-Version and X-Request-Id (${service})`, url, nameAndPhone)
    answeredRequestIds.push(String(headers['x-request-id']))
  }

  // Keys in query strings: refused, on every service, and with a key in the header too.
  const inQuery = `api_key=${queryKey}&token=${queryToken}`
  for (const [name, url] of [['api', `${leads}?${inQuery}`], ['data-service', `${imports}?${inQuery}`], ['orchestrator', `${orch}/leads/${id}/score?${inQuery}`]] as const) {
    const res = await fetch(url, { method: name === 'data-service' ? 'POST' : 'GET' })
    statuses[`${name}: key in query`] = res.status
    await res.arrayBuffer()
  }
  await call('api: key in query with a header key', `${leads}?limit=1&${inQuery}`)

  // Every service has exported the server span of its last request before it is stopped; stopping flushes the rest.
  await waitForSpans(otlp.received, () => ['api', 'data-service', 'orchestrator'].every((s) => otlp.received.some((r) => r.service === s && r.span.kind === 2 && JSON.stringify(r.span.attributes).includes('REDACTED'))))
  for (const service of [orchestrator, data, api]) assert.equal(await service.stop(), 0, service.stderr())
  exported = otlp.exports
  spans = otlp.received
  logs = { api: api.stdout() + api.stderr(), 'data-service': data.stdout() + data.stderr(), orchestrator: orchestrator.stdout() + orchestrator.stderr() }
}, { timeout: 120000 })

after(async () => {
  for (const fn of cleanups.reverse()) await fn()
  await db?.drop()
})

test('every path was taken: the marked lead was served, patched, imported and routed, and every error answered', () => {
  assert.deepEqual(statuses, {
    'read (fill)': 200,
    'read (hit)': 200,
    list: 200,
    patch: 200,
    'read after patch': 200,
    'invalid email': 400,
    'invalid phone': 400,
    'invalid state': 400,
    'marker as a property name': 400,
    'name as a body field name': 400,
    'name as a patch field name': 400,
    'invalid JSON': 400,
    'invalid patch': 400,
    duplicate: 409,
    'import CSV': 200,
    'import NDJSON': 200,
    'interrupted import': 413,
    score: 200,
    route: 200,
    'route again': 409,
    'route unroutable': 409,
    'route batch': 200,
    'url: name and phone in the path of no route': 404,
    'url: name as a lead id': 400,
    'url: name and phone as unknown query parameters': 400,
    'url: phone as a query parameter\'s name': 400,
    'url: name as a query parameter\'s name': 400,
    'url: name as a data-service query parameter\'s name': 400,
    'url: name as an orchestrator query parameter\'s name': 200,
    'url: name and phone as filter values': 400,
    'url: name in a data-service filter': 400,
    'url: name as an orchestrator lead id': 400,
    'headers: name and phone as Host, Accept-Version and X-Request-Id (api)': 200,
    'headers: name and phone as Host, Accept-Version and X-Request-Id (data-service)': 200,
    'headers: name and phone as Host, Accept-Version and X-Request-Id (orchestrator)': 200,
    'api: key in query': 401,
    'data-service: key in query': 401,
    'orchestrator: key in query': 401,
    'api: key in query with a header key': 400
  })
  for (const service of ['api', 'data-service', 'orchestrator']) {
    assert.ok(spans.some((r) => r.service === service && r.span.kind === 2), `${service} exported its server spans`)
    assert.match(logs[service] ?? '', /"msg":"request completed"/, `${service} logged at every level`)
  }
  assert.match(logs['data-service'] ?? '', /import interrupted/, 'the interrupted import was logged')
})

test('a cached lead\'s name, email and phone never reach a Redis span: its statement is the command and its keys', () => {
  const redis = spans.filter((r) => r.scope === '@opentelemetry/instrumentation-ioredis')
  const statement = (r: ReceivedSpan): string => String(r.span.attributes?.find((a) => a.key === 'db.query.text')?.value.stringValue ?? '')
  const evalsha = redis.filter((r) => r.span.name === 'evalsha')
  assert.ok(evalsha.some((r) => r.service === 'api' && statement(r).includes('http:leads:id:')), `the cache wrote the lead through Lua: ${evalsha.map(statement).join(', ')}`)
  for (const r of redis) {
    const text = statement(r)
    for (const marker of MARKERS) assert.ok(!text.includes(marker), `${r.service} ${r.span.name}: ${text}`)
    // EVALSHA <keys>: no script hash argument count, no argument.
    if (r.span.name === 'evalsha') assert.doesNotMatch(text, /^evalsha [0-9a-f]{40}/, text)
  }
})

test('no exported span attribute, event, resource, log record or metric of any service carries a lead\'s name, email or phone', () => {
  const paths = new Set(exported.map((e) => e.path))
  assert.deepEqual([...paths].sort(), ['/v1/logs', '/v1/metrics', '/v1/traces'], 'traces, log records and metrics were exported')
  for (const e of exported) {
    for (const marker of MARKERS) {
      const at = e.body.indexOf(marker)
      assert.equal(at, -1, `${e.path} (${e.contentType}) holds ${marker}: ...${e.body.subarray(Math.max(0, at - 300), at + 100).toString()}...`)
    }
  }
})

test('no log line of any service quotes a lead\'s name, email or phone, on any error path', () => {
  for (const [service, text] of Object.entries(logs)) {
    for (const line of text.split('\n')) {
      for (const marker of MARKERS) assert.ok(!line.includes(marker), `${service} logged ${marker}: ${line}`)
    }
  }
})

test('an API key sent in a query string reaches neither a log line nor a span', () => {
  for (const [service, text] of Object.entries(logs)) {
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `${service} logged a secret: ${text.split('\n').find((l) => l.includes(secret))}`)
    assert.match(text, /"url":"[^"]*api_key=\[REDACTED\]&token=\[REDACTED\]"/, `${service} logged the URL, scrubbed`)
  }
  for (const e of exported) for (const secret of SECRETS) assert.equal(e.body.indexOf(secret), -1, `${e.path} holds a secret`)
  const paths = spans.filter((r) => r.span.kind === 2).flatMap((r) => r.span.attributes?.filter((a) => a.key === 'url.path').map((a) => String(a.value.stringValue)) ?? [])
  assert.ok(paths.some((p) => p.endsWith('?api_key=[REDACTED]&token=[REDACTED]')), `server spans keep the scrubbed query: ${paths.join(', ')}`)
})

test('a phone or name in a URL is redacted from the URLs services log and trace, and what a route declares is shown as sent', () => {
  const serverPaths = spans.filter((r) => r.span.kind === 2).flatMap((r) => r.span.attributes?.filter((a) => a.key === 'url.path').map((a) => String(a.value.stringValue)) ?? [])
  const expected: Array<[string, string]> = [
    ['api', '/api/v1/leads?limit=5'],
    ['api', `/api/v1/leads/${leadId}`],
    ['api', '/api/v1/[REDACTED]/[REDACTED]/[REDACTED]'],
    ['api', '/api/v1/leads/[REDACTED]'],
    ['api', '/api/v1/leads?[REDACTED]=[REDACTED]&phone=[REDACTED]'],
    ['api', '/api/v1/leads?[REDACTED]'],
    ['api', '/api/v1/leads?[REDACTED]=[REDACTED]&limit=5'],
    ['data-service', '/data/v1/leads/unassigned?[REDACTED]=[REDACTED]'],
    ['orchestrator', `/orchestrator/v1/leads/${leadId}/score?[REDACTED]`],
    ['api', '/api/v1/leads?status=[REDACTED]&limit=[REDACTED]'],
    ['data-service', '/data/v1/leads/unassigned?state=[REDACTED]&limit=[REDACTED]'],
    ['orchestrator', '/orchestrator/v1/leads/[REDACTED]/score?[REDACTED]=[REDACTED]']
  ]
  for (const [service, url] of expected) {
    assert.ok(logs[service]?.includes(`"url":"${url}"`), `${service} logged ${url}: ${logs[service]?.match(/"url":"[^"]*"/g)?.join(' ')}`)
    assert.ok(serverPaths.includes(url), `a server span has url.path ${url}: ${serverPaths.join(', ')}`)
  }
})

test('a name or phone sent as Host, Accept-Version or X-Request-Id reaches no log line of any service: the request line shows [REDACTED], the request id is a fresh uuid', () => {
  assert.equal(answeredRequestIds.length, 3)
  for (const id of answeredRequestIds) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  for (const [service, text] of Object.entries(logs)) {
    const answered = text.split('\n').filter((l) => l.includes('"msg":"request completed"')).map((l) => JSON.parse(l) as { reqId: string, req: Record<string, unknown> })
    const sent = answered.filter((l) => answeredRequestIds.includes(l.reqId))
    assert.equal(sent.length, 1, `${service} logged the request that sent them`)
    assert.deepEqual([sent[0]?.req.host, sent[0]?.req.version], ['[REDACTED]', '[REDACTED]'], `${service}: ${JSON.stringify(sent[0])}`)
  }
})
