import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { createTestSchema, testEnv, uniqueName, SERVICE_HEADERS, type TestSchema } from '../../test/helpers/database.js'
import { buildDataService } from './app.js'
import { loadDataServiceConfig } from './config.js'
import { Readable, Writable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { pino } from 'pino'
import { DatabaseError, type ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { ImportInterruptedError, importLeads, type Rejection } from './lead-import.js'

async function setup (t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, db: TestSchema }> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, { CACHE_PREFIX: `${uniqueName('ds')}:`, ...env }) }))
  t.after(() => app.close())
  return { app, db }
}

const CSV_HEADER = 'firstName,lastName,email,phone,product,state,source,score'
const csvRow = (i: number, state = 'CA'): string => `Ann${i},Lee,ann${i}@example.com,+1 555 010 ${String(i % 10000).padStart(4, '0')},auto,${state},partner,${i % 100}`

async function post (app: FastifyInstance, body: string, type = 'text/csv') {
  return app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': type }, payload: body })
}

test('a CSV import inserts, a re-import changes nothing, a changed row updates', async (t) => {
  const { app, db } = await setup(t)
  const csv = [CSV_HEADER, ...Array.from({ length: 250 }, (_, i) => csvRow(i))].join('\n')
  const first = await post(app, csv)
  assert.equal(first.statusCode, 200, first.body)
  assert.deepEqual({ ...(first.json() as Record<string, unknown>), rejections: undefined }, { rows: 250, inserted: 250, updated: 0, unchanged: 0, rejected: 0, rejections: undefined, rejectionsTruncated: false })
  const again = await post(app, csv)
  assert.equal(again.json().unchanged, 250)
  assert.equal(again.json().inserted + again.json().updated, 0)
  const changed = await post(app, [CSV_HEADER, csvRow(1, 'TX'), csvRow(2)].join('\n'))
  assert.deepEqual([changed.json().updated, changed.json().unchanged], [1, 1])
  const [row] = await db.sql<{ n: number, state: string }>("SELECT count(*)::int AS n, max(state) AS state FROM leads WHERE email = 'ann1@example.com'")
  assert.deepEqual(row, { n: 1, state: 'TX' })
})

test('an import sent compressed (Content-Encoding: gzip) is refused 415, not read as rows of text that is not UTF-8 and answered 200', async (t) => {
  const { app, db } = await setup(t)
  const csv = [CSV_HEADER, csvRow(1), csvRow(2)].join('\n')
  const res = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv', 'content-encoding': 'gzip' }, payload: gzipSync(csv) })
  assert.equal(res.statusCode, 415, res.body)
  assert.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  assert.equal(res.headers['accept-encoding'], 'identity')
  const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(row?.n, 0)
  const plain = await post(app, csv)
  assert.equal(plain.json().inserted, 2, 'the same rows sent unencoded are imported')
})

test('each rejected row is reported with its line and reason; nothing is dropped silently', async (t) => {
  const { app, db } = await setup(t)
  const csv = [
    CSV_HEADER,
    csvRow(1),
    'Bob,Ray,not-an-email,,auto,CA,web,1', // line 3
    'Cy,Doe,cy@example.com,,boat,CA,web,1', // line 4
    'Di,Eve,di@example.com,,home,ZZ,web,1', // line 5
    'only,three,columns', // line 6
    csvRow(2),
    'Ed,Fox,ed@example.com,,life,NY,web,101' // line 8
  ].join('\n')
  const res = await post(app, csv)
  assert.equal(res.statusCode, 200, res.body)
  const report = res.json()
  assert.equal(report.inserted, 2)
  assert.equal(report.rejected, 5)
  assert.equal(report.rows, 7)
  assert.deepEqual(report.rejections.map((r: { line: number }) => r.line), [3, 4, 5, 6, 8])
  assert.match(report.rejections[0].reason, /email/)
  assert.match(report.rejections[1].reason, /product must be one of/)
  assert.match(report.rejections[2].reason, /state/)
  assert.match(report.rejections[3].reason, /CSV/)
  assert.match(report.rejections[4].reason, /score/)
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 2)
})

test('NDJSON imports line by line; a key repeated in one file updates the first row', async (t) => {
  const { app } = await setup(t, { IMPORT_BATCH_SIZE: '10' })
  const lead = (i: number, last = 'Lee'): string => JSON.stringify({ firstName: `N${i}`, lastName: last, email: `n${i}@example.com`, product: 'home', state: 'FL' })
  const body = [lead(1), lead(2), '{not json', '', '[1]', lead(1, 'Changed'), ...Array.from({ length: 30 }, (_, i) => lead(i + 10))].join('\n')
  const res = await post(app, body, 'application/x-ndjson')
  const report = res.json()
  assert.equal(res.statusCode, 200, res.body)
  assert.deepEqual([report.inserted, report.updated, report.rejected], [32, 1, 2])
  assert.deepEqual(report.rejections, [{ line: 3, reason: 'not valid JSON' }, { line: 5, reason: 'not a JSON object' }])
})

test('bad requests get clear 4xx answers: wrong type, too large, no scope', async (t) => {
  const { app } = await setup(t, { IMPORT_MAX_BYTES: '2048' })
  const json = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'application/json' }, payload: '{}' })
  assert.equal(json.statusCode, 415)
  assert.equal(json.json().code, 'UNSUPPORTED_IMPORT_TYPE')
  const big = await post(app, [CSV_HEADER, ...Array.from({ length: 100 }, (_, i) => csvRow(i))].join('\n'))
  assert.equal(big.statusCode, 413)
  assert.equal(big.json().code, 'IMPORT_TOO_LARGE')
  const header = await post(app, ['firstName,"lastName,email', csvRow(1)].join('\n'))
  assert.equal(header.statusCode, 400, header.body)
  assert.deepEqual([header.json().code, header.json().message], ['IMPORT_BAD_HEADER', 'The CSV header cannot be read: a quote that is never closed'])
  const anonymous = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { 'content-type': 'text/csv' }, payload: CSV_HEADER })
  assert.equal(anonymous.statusCode, 401)
})

test('a stream too large for the limit keeps the batches it committed and reports them; the rest is not half written', async (t) => {
  const { app, db } = await setup(t, { IMPORT_MAX_BYTES: '20000', IMPORT_BATCH_SIZE: '50' })
  const rows = Array.from({ length: 400 }, (_, i) => csvRow(i))
  // Over a real socket, in chunks and without a content-length, so the limit is found while streaming.
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const { request } = await import('node:http')
  const res = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = request(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv' } }, (r) => {
      let body = ''
      r.on('data', (c: Buffer) => { body += c.toString() })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.write(CSV_HEADER + '\n')
    let i = 0
    const next = (): void => {
      if (i >= rows.length) { req.end(); return }
      req.write(rows.slice(i, i + 20).join('\n') + '\n')
      i += 20
      setTimeout(next, 2)
    }
    next()
  })
  assert.equal(res.status, 413, res.body)
  const body = JSON.parse(res.body) as { code: string, report: { inserted: number, rows: number } }
  assert.equal(body.code, 'IMPORT_TOO_LARGE')
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, body.report.inserted)
  assert.equal(body.report.inserted % 50, 0, 'only whole batches')
  assert.equal(body.report.rows, body.report.inserted, 'the rows it reports are the rows it committed')
  assert.ok(body.report.inserted > 0)
})

test('a rejected row\'s reason names its field and what is wrong, never quoting the value it held', async (t) => {
  const { app } = await setup(t)
  const csv = [
    CSV_HEADER,
    'Ann,Lee,x"someone@example.com",,auto,CA,web,1', // line 2: a stray quote inside the email
    'Bob,Ray,someone.else@,,auto,CA,web,1', // line 3
    'Cy,Doe,"cy@example.com,,auto,CA,web,1' // line 4: a quote never closed
  ].join('\n')
  const res = await post(app, csv)
  assert.equal(res.statusCode, 200, res.body)
  const reasons = (res.json().rejections as Array<{ line: number, reason: string }>)
  assert.deepEqual(reasons, [
    { line: 2, reason: 'unreadable CSV: a quote inside an unquoted value in field email' },
    { line: 3, reason: 'email must match format "email"' },
    { line: 4, reason: 'unreadable CSV: a quote that is never closed in field email' }
  ])
  const ndjson = await post(app, [
    JSON.stringify({ firstName: 'Di', lastName: 'Eve', email: 'di@example.com', product: 'home', state: 'FL', 'someone@example.com': 1 }),
    JSON.stringify({ firstName: 'Di', lastName: 'Eve', email: 'di@example.com', product: 'home', state: 'FL', nickname: 'Dee' })
  ].join('\n'), 'application/x-ndjson')
  // An unknown key may be a lead's name: the reason lists the fields instead of echoing it.
  const unknown = 'an unknown field (the fields are firstName, lastName, email, phone, product, state, source, score)'
  assert.deepEqual(ndjson.json().rejections, [{ line: 1, reason: unknown }, { line: 2, reason: unknown }])
})

test('a NUL byte in one row rejects that row and the import goes on', async (t) => {
  const { app, db } = await setup(t)
  // 1,501 rows, the poison at row 1,200 (line 1,201): in the second batch of 1,000, as it was found.
  const rows = Array.from({ length: 1501 }, (_, i) => csvRow(i))
  rows[1199] = `Ann\u0000X,Lee,poison@example.com,,auto,CA,web,1`
  const res = await post(app, [CSV_HEADER, ...rows].join('\n'))
  assert.equal(res.statusCode, 200, res.body)
  const report = res.json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [1501, 1500, 1])
  assert.equal(report.rejections[0].line, 1201)
  assert.match(report.rejections[0].reason, /^firstName must not contain control characters/)
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 1500)
})

test('other control characters and blank names are refused with their reason, in NDJSON too', async (t) => {
  const { app } = await setup(t)
  const lead = (firstName: string, lastName = 'Lee', i = 0): string => JSON.stringify({ firstName, lastName, email: `c${i}@example.com`, product: 'auto', state: 'CA' })
  const body = [lead('Ann\tB', 'Lee', 1), lead('Ann', 'Le\u007fe', 2), lead('Ann\u0085', 'Lee', 3), lead('   ', 'Lee', 4), lead('Zoë', 'Lee', 5)].join('\n')
  const report = (await post(app, body, 'application/x-ndjson')).json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [5, 1, 4])
  assert.deepEqual(report.rejections.map((r: Rejection) => r.reason), [
    'firstName must not contain control characters (NUL, line breaks, tabs)',
    'lastName must not contain control characters (NUL, line breaks, tabs)',
    'firstName must not contain control characters (NUL, line breaks, tabs)',
    'firstName must not be blank'
  ])
})

test('a lone UTF-16 surrogate in an NDJSON field is rejected as not valid Unicode, naming its line and field, not as a control character', async (t) => {
  const { app, db } = await setup(t)
  // JSON.stringify writes a lone surrogate as its escape (`\ud800`), as a client's serializer sends half of a pair.
  const lead = (fields: Record<string, string>, i: number): string => JSON.stringify({ firstName: 'Ann', lastName: 'Lee', email: `u${i}@example.com`, product: 'auto', state: 'CA', ...fields })
  const lines = [
    lead({ firstName: 'Ann\ud800' }, 1),
    lead({ lastName: '\udfffLee' }, 2),
    lead({ email: 'ann\ud800@example.com' }, 3),
    lead({ source: 'web\udc00' }, 4),
    lead({ phone: '+1 555 0100\ud83d' }, 5),
    lead({ firstName: 'Ann 😀' }, 6)
  ]
  assert.ok(lines[0]?.includes('\\ud800'), 'the body holds the escape')
  const res = await post(app, lines.join('\n'), 'application/x-ndjson')
  assert.equal(res.statusCode, 200, res.body)
  const report = res.json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [6, 1, 5])
  const unicode = 'must be valid Unicode: it holds an unpaired UTF-16 surrogate (\\ud800 to \\udfff), which is no character'
  assert.deepEqual(report.rejections, ['firstName', 'lastName', 'email', 'source', 'phone'].map((field, i) => ({ line: i + 1, reason: `${field} ${unicode}` })))
  const [row] = await db.sql<{ first_name: string }>("SELECT first_name FROM leads WHERE email = 'u6@example.com'")
  assert.equal(row?.first_name, 'Ann 😀', 'a surrogate pair is one character, kept')
})

test('a name of only zero-width or format characters and a phone of dashes are rejected by the import as by the API', async (t) => {
  const { app, db } = await setup(t)
  const lead = (i: number, over: Record<string, unknown>): string => JSON.stringify({ firstName: 'Ann', lastName: 'Lee', email: `z${i}@example.com`, product: 'auto', state: 'CA', ...over })
  const body = [lead(1, { lastName: '\u200b' }), lead(2, { firstName: '\ufeff\u2060' }), lead(3, { phone: '-------' }), lead(4, { phone: '+1 555 0100' })].join('\n')
  const report = (await post(app, body, 'application/x-ndjson')).json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [4, 1, 3], JSON.stringify(report))
  assert.deepEqual(report.rejections.map((r: Rejection) => r.line), [1, 2, 3])
  assert.match(report.rejections[0].reason, /^lastName must not be blank/)
  assert.match(report.rejections[1].reason, /^firstName must not be blank/)
  assert.match(report.rejections[2].reason, /^phone must be a phone number: at least 7 digits/)
  const csv = await post(app, [CSV_HEADER, 'Ann,\u200b,z5@example.com,,auto,CA,web,1', 'Ann,Lee,z6@example.com,-------,auto,CA,web,1'].join('\n'))
  assert.deepEqual([csv.json().inserted, csv.json().rejected], [0, 2], csv.body)
  const [n] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(n?.n, 1)
})

test('a row the database refuses for its data is rejected alone; the rest of its batch is written', async (t) => {
  const { app, db } = await setup(t, { IMPORT_BATCH_SIZE: '100' })
  // A rule only the database knows, so the row passes the schema as the NUL byte once did.
  await db.sql("ALTER TABLE leads ADD CONSTRAINT test_no_poison CHECK (last_name <> 'Poison')")
  const rows = Array.from({ length: 250 }, (_, i) => csvRow(i))
  rows[42] = 'Ann,Poison,p1@example.com,,auto,CA,web,1'
  rows[199] = 'Bo,Poison,p2@example.com,,home,CA,web,1'
  const first = await post(app, [CSV_HEADER, ...rows].join('\n'))
  assert.equal(first.statusCode, 200, first.body)
  const report = first.json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [250, 248, 2])
  assert.deepEqual(report.rejections.map((r: Rejection) => r.line), [44, 201])
  for (const r of report.rejections as Rejection[]) {
    assert.match(r.reason, /^refused by the database: .*SQLSTATE 23514/)
    assert.doesNotMatch(r.reason, /Poison|example/, 'no submitted value in a reason')
  }
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 248)
  // And a re-import is not stopped at the same place either.
  const again = (await post(app, [CSV_HEADER, ...rows].join('\n'))).json()
  assert.deepEqual([again.rows, again.unchanged, again.rejected], [250, 248, 2])
})

test('a malformed quote counts each record once', async (t) => {
  const { app } = await setup(t)
  const twoRows = await post(app, [CSV_HEADER, 'Ann,"Lee"x,a@example.com,,auto,CA,web,1', csvRow(2)].join('\n'))
  assert.equal(twoRows.statusCode, 200, twoRows.body)
  assert.deepEqual([twoRows.json().rows, twoRows.json().inserted, twoRows.json().rejected], [2, 1, 1])
  assert.deepEqual(twoRows.json().rejections, [{ line: 2, reason: 'unreadable CSV: text after a closing quote in field lastName' }])
  // An unclosed quote does not swallow the lines after it, nor count them twice.
  const fiveRows = await post(app, [CSV_HEADER, csvRow(10), 'Bo,"Ray,b@example.com,,auto,CA,web,1', csvRow(11), 'Cy,Do"e,c@example.com,,auto,CA,web,1', csvRow(12)].join('\r\n') + '\r\n\r\n')
  const report = fiveRows.json()
  assert.deepEqual([report.rows, report.inserted, report.rejected], [5, 3, 2])
  assert.deepEqual(report.rejections, [{ line: 3, reason: 'unreadable CSV: a quote that is never closed in field lastName' }, { line: 5, reason: 'unreadable CSV: a quote inside an unquoted value in field lastName' }])
  // Quoting done right still reads: commas and doubled quotes inside a quoted field.
  const quoted = (await post(app, ['\uFEFF' + CSV_HEADER, '"Ann, Jr","O""Neil",q@example.com,,auto,CA,web,1'].join('\n'))).json()
  assert.deepEqual([quoted.rows, quoted.inserted], [1, 1])
})

test('an over-long NDJSON record is rejected alone', async (t) => {
  const { app, db } = await setup(t, { IMPORT_MAX_RECORD_BYTES: '1024' })
  const lead = (i: number, padding = 0): string => `{"firstName":"N${i}",${' '.repeat(padding)}"lastName":"Lee","email":"long${i}@example.com","product":"home","state":"FL"}`
  // Valid JSON under the default bound, over this one: the bound is what rejects it.
  const body = [lead(1), lead(2, 2000), lead(3), lead(4, 3_000_000), lead(5)].join('\n')
  const res = await post(app, body, 'application/x-ndjson')
  assert.equal(res.statusCode, 200, res.body)
  assert.deepEqual([res.json().rows, res.json().inserted, res.json().rejected], [5, 3, 2])
  assert.deepEqual(res.json().rejections, [{ line: 2, reason: 'record longer than 1024 bytes' }, { line: 4, reason: 'record longer than 1024 bytes' }])
  const csv = (await post(app, [CSV_HEADER, csvRow(1), `Ann,${'L'.repeat(5000)},x@example.com,,auto,CA,web,1`, csvRow(2)].join('\n'))).json()
  assert.deepEqual([csv.rows, csv.inserted, csv.rejected, csv.rejections[0].line], [3, 2, 1, 3])
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 5)

  const roomy = await setup(t)
  assert.deepEqual((await post(roomy.app, lead(2, 2000), 'application/x-ndjson')).json().inserted, 1, 'the default bound holds a padded record')
})

/** An NDJSON import over a real socket whose body stays open until `finish`, so it runs as long as the test says. */
async function openImport (url: string, i: number): Promise<{ finish: () => Promise<{ status: number, body: string }>, abort: () => void }> {
  const { request } = await import('node:http')
  const lead = JSON.stringify({ firstName: `Open${i}`, lastName: 'Lee', email: `open${i}@example.com`, product: 'life', state: 'NY' })
  const req = request(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' } })
  const answered = new Promise<{ status: number, body: string }>((resolve, reject) => {
    req.on('response', (r) => {
      let body = ''
      r.on('data', (c: Buffer) => { body += c.toString() })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
  req.write(lead + '\n')
  return { finish: async () => { req.end(); return answered }, abort: () => { req.destroy() } }
}

async function busyAnswer (url: string, deadlineMs = 20000): Promise<Response> {
  const started = Date.now()
  for (let i = 0; ; i++) {
    const res = await fetch(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' }, body: JSON.stringify({ firstName: 'P', lastName: 'Q', email: `probe${i}@example.com`, product: 'auto', state: 'CA' }) })
    if (res.status === 429 || Date.now() - started > deadlineMs) return res
    // The held imports have not reached the route yet: this probe ran (and was counted as its own import).
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('a third concurrent import is answered 429 with Retry-After', async (t) => {
  const { app, db } = await setup(t)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const held = [await openImport(url, 1), await openImport(url, 2)]
  const busy = await busyAnswer(url)
  // Closing the app waits for open requests: a failed assertion must not leave these hanging.
  if (busy.status !== 429) for (const h of held) h.abort()
  assert.equal(busy.status, 429)
  assert.equal(busy.headers.get('retry-after'), '5')
  const body = await busy.json() as { code: string, message: string }
  assert.equal(body.code, 'IMPORT_BUSY')
  assert.match(body.message, /(2 at once)/)
  for (const h of held) {
    const done = await h.finish()
    assert.equal(done.status, 200, done.body)
    assert.equal(JSON.parse(done.body).inserted, 1)
  }
  // Room again once they are done.
  const after = await post(app, JSON.stringify({ firstName: 'After', lastName: 'Lee', email: 'after@example.com', product: 'auto', state: 'CA' }), 'application/x-ndjson')
  assert.equal(after.statusCode, 200, after.body)
  const [held1] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM leads WHERE email LIKE 'open%'")
  assert.equal(held1?.n, 2)
})

test('IMPORT_MAX_CONCURRENT=1 answers a second concurrent import 429', async (t) => {
  const { app } = await setup(t, { IMPORT_MAX_CONCURRENT: '1' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const held = await openImport(url, 1)
  const busy = await busyAnswer(url)
  if (busy.status !== 429) held.abort()
  assert.equal(busy.status, 429)
  assert.match((await busy.json() as { message: string }).message, /(1 at once)/)
  assert.equal((await held.finish()).status, 200)
})

test('a connection failure during a batch stops the import at that batch; it is not retried row by row', async () => {
  let statements = 0
  const unavailable = {
    query: async () => {
      statements++
      throw new DatabaseError('DB_UNAVAILABLE', 'The database is unavailable', { retryable: true, statusCode: 503 })
    }
  } as unknown as ConnectionPool
  const csv = [CSV_HEADER, ...Array.from({ length: 30 }, (_, i) => csvRow(i))].join('\n')
  const error = await importLeads(unavailable, Readable.from([Buffer.from(csv)]), 'csv', { batchSize: 10 }).then(() => undefined, (e: unknown) => e)
  assert.ok(error instanceof ImportInterruptedError)
  assert.equal(error.line, 2, 'nothing from the first batch on was written')
  assert.equal(error.report.rows, 0)
  assert.equal(statements, 1)
})

test('a CSV whose lines end with a lone CR is refused 400, not acknowledged with zero rows', async (t) => {
  const { app, db } = await setup(t)
  const res = await post(app, [CSV_HEADER, csvRow(1), csvRow(2)].join('\r'))
  assert.equal(res.statusCode, 400, res.body)
  assert.equal(res.json().code, 'IMPORT_BAD_HEADER')
  assert.match(res.json().message, /lone CR/)
  const [row] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(row?.n, 0)
})

test('a repeated CSV column is refused 400 instead of one cell silently overwriting the other', async (t) => {
  const { app } = await setup(t)
  const res = await post(app, [`email,${CSV_HEADER}`, `first@example.com,${csvRow(1)}`].join('\n'))
  assert.equal(res.statusCode, 400, res.body)
  assert.deepEqual([res.json().code, res.json().message], ['IMPORT_BAD_HEADER', 'The CSV header cannot be read: column email appears twice'])
  const snake = await post(app, ['first_name,firstName,lastName,email,product,state', 'A,B,Lee,x@example.com,auto,CA'].join('\n'))
  assert.equal(snake.json().message, 'The CSV header cannot be read: column firstName appears twice')
})

test('a lead\'s name sent as a CSV column name reaches neither the header error (logged) nor a rejection', async (t) => {
  const { app } = await setup(t)
  const twice = await post(app, [`AnnLee,${CSV_HEADER},AnnLee`, `x,${csvRow(1)},y`].join('\n'))
  assert.equal(twice.statusCode, 400, twice.body)
  assert.equal(twice.json().message, 'The CSV header cannot be read: columns 1 and 10 have the same name')
  const unread = await post(app, [`${CSV_HEADER},AnnLee`, `${csvRow(1)},x"y`, `${csvRow(2)},z`].join('\n'))
  assert.equal(unread.statusCode, 200, unread.body)
  assert.deepEqual(unread.json().rejections.map((r: { reason: string }) => r.reason), [
    'unreadable CSV: a quote inside an unquoted value in field 9',
    'an unknown field (the fields are firstName, lastName, email, phone, product, state, source, score)'
  ])
  assert.ok(!(twice.body + unread.body).includes('Ann'), twice.body + unread.body)
})

test('a row that is not UTF-8 (a Latin-1 name) is rejected by its line, never stored with replacement characters', async (t) => {
  const { app, db } = await setup(t)
  const latin1 = Buffer.concat([Buffer.from(`${CSV_HEADER}\n${csvRow(1)}\nJos`), Buffer.from([0xe9]), Buffer.from(',Lee,jose@example.com,,auto,CA,partner,5\n')])
  const res = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv' }, payload: latin1 })
  assert.equal(res.statusCode, 200, res.body)
  assert.deepEqual([res.json().inserted, res.json().rejections], [1, [{ line: 3, reason: 'not valid UTF-8 (send the file UTF-8 encoded)' }]])
  const ndjson = Buffer.concat([Buffer.from('{"firstName":"Jos'), Buffer.from([0xe9]), Buffer.from('","lastName":"Lee","email":"j2@example.com","product":"auto","state":"CA"}\n')])
  const nd = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' }, payload: ndjson })
  assert.deepEqual(nd.json().rejections, [{ line: 1, reason: 'not valid UTF-8 (send the file UTF-8 encoded)' }])
  const stored = await db.sql<{ first_name: string }>("SELECT first_name FROM leads WHERE first_name LIKE '%\uFFFD%'")
  assert.deepEqual(stored, [])
})

test('an import declared in a charset other than UTF-8 (text/csv; charset=latin1) is refused 415 before a row is imported, not half imported', async (t) => {
  const { app, db } = await setup(t)
  const latin1 = Buffer.concat([Buffer.from(`${CSV_HEADER}\n${csvRow(1)}\nJos`), Buffer.from([0xe9]), Buffer.from(',Lee,jose@example.com,,auto,CA,partner,5\n')])
  for (const type of ['text/csv; charset=latin1', 'text/csv; charset="ISO-8859-1"', 'application/x-ndjson; charset=utf-16', 'text/csv; charset=', 'text/csv; charset="utf-8']) {
    const res = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': type }, payload: latin1 })
    assert.equal(res.statusCode, 415, `${type}: ${res.body}`)
    assert.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE', type)
    assert.doesNotMatch(res.json().message, /latin1|8859|utf-16/i, 'the charset sent is not echoed')
  }
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 0)
  for (const type of ['text/csv; charset=UTF-8', 'text/csv; charset=us-ascii', 'text/csv; header=present; foo="a;charset=latin1"']) {
    const res = await app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { ...SERVICE_HEADERS, 'content-type': type }, payload: `${CSV_HEADER}\n${csvRow(1)}\n` })
    assert.equal(res.statusCode, 200, `${type}: ${res.body}`)
  }
})

test('an import the database stops part-way answers 503 IMPORT_INTERRUPTED in the platform body, with Retry-After, the line to resume from and the report', async (t) => {
  const { app, db } = await setup(t, { IMPORT_BATCH_SIZE: '50' })
  // Not a refusal of the row's data (SQLSTATE P0001, not class 22 or 23): the import cannot go on.
  await db.sql(`CREATE FUNCTION stop_import() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.email = 'ann120@example.com' THEN RAISE EXCEPTION 'stopped'; END IF; RETURN NEW; END $$`)
  await db.sql('CREATE TRIGGER stop_import BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION stop_import()')
  const res = await post(app, [CSV_HEADER, ...Array.from({ length: 200 }, (_, i) => csvRow(i))].join('\n'))
  assert.equal(res.statusCode, 503, res.body)
  assert.equal(res.headers['retry-after'], '1')
  assert.match(String(res.headers['content-type']), /^application\/json/)
  const body = res.json() as { statusCode: number, code: string, error: string, message: string, line: number, report: { inserted: number, rows: number } }
  assert.deepEqual(Object.keys(body), ['statusCode', 'code', 'error', 'message', 'line', 'report'])
  assert.deepEqual([body.statusCode, body.code, body.error], [503, 'IMPORT_INTERRUPTED', 'Service Unavailable'])
  // Row i is on line i + 2; the third batch (rows 100-149) holds the stopped row.
  assert.equal(body.line, 102)
  assert.match(body.message, /^the import stopped; resume it from line 102: /)
  assert.deepEqual([body.report.inserted, body.report.rows], [100, 100])
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 100)
})

interface Stored { phone: string | null, source: string, score: number, status: string, first_name: string }
const storedLead = async (db: TestSchema, email: string): Promise<Stored | undefined> =>
  (await db.sql<Stored>('SELECT phone, source, score, status, first_name FROM leads WHERE email = $1', [email]))[0]

test('a CSV re-import without the phone, source and score columns keeps those fields of an existing lead instead of wiping them', async (t) => {
  const { app, db } = await setup(t)
  const full = await post(app, [CSV_HEADER, 'Ann,Lee,ann.wipe@example.com,+1 555 010 2000,home,TX,partner.acme,90'].join('\n'))
  assert.equal(full.json().inserted, 1, full.body)
  // Routing scores the lead afterwards (services/orchestrator/assignments.ts writes the score).
  await db.sql("UPDATE leads SET score = 77, updated_at = now() WHERE email = 'ann.wipe@example.com'")
  const kept = { phone: '+1 555 010 2000', source: 'partner.acme', score: 77, status: 'new' }

  const narrow = await post(app, ['firstName,lastName,email,product,state', 'Ann,Lee,ann.wipe@example.com,home,TX', 'Bo,Ray,bo.new@example.com,home,TX'].join('\n'))
  assert.equal(narrow.statusCode, 200, narrow.body)
  assert.deepEqual([narrow.json().inserted, narrow.json().updated, narrow.json().unchanged], [1, 0, 1], 'the values it supplied are the stored ones: unchanged')
  assert.deepEqual(await storedLead(db, 'ann.wipe@example.com'), { ...kept, first_name: 'Ann' })
  assert.deepEqual(await storedLead(db, 'bo.new@example.com'), { phone: null, source: 'web', score: 0, status: 'new', first_name: 'Bo' }, 'a new lead gets the defaults')

  const renamed = await post(app, ['first_name,last_name,email,product,state,phone', 'Anna,Lee,ann.wipe@example.com,home,TX,+1 555 010 2001'].join('\n'))
  assert.deepEqual([renamed.json().updated, renamed.json().unchanged], [1, 0])
  assert.deepEqual(await storedLead(db, 'ann.wipe@example.com'), { ...kept, phone: '+1 555 010 2001', first_name: 'Anna' })

  // A column sent with an empty cell is supplied: it clears the field to null (phone) or its default.
  const cleared = await post(app, [CSV_HEADER, 'Anna,Lee,ann.wipe@example.com,,home,TX,,'].join('\n'))
  assert.deepEqual([cleared.json().updated, cleared.json().unchanged], [1, 0])
  assert.deepEqual(await storedLead(db, 'ann.wipe@example.com'), { phone: null, source: 'web', score: 0, status: 'new', first_name: 'Anna' })
})

test('an NDJSON record without the phone, source or score keys keeps those fields of an existing lead, and the score, status and assignment routing gave it', async (t) => {
  const { app, db } = await setup(t, { IMPORT_BATCH_SIZE: '10' })
  const ndjson = (...records: object[]): string => records.map((r) => JSON.stringify(r)).join('\n')
  const ann = { firstName: 'Ann', lastName: 'Lee', email: 'ann.wipe@example.com', product: 'home', state: 'TX' }
  const cy = { firstName: 'Cy', lastName: 'Doe', email: 'cy.keep@example.com', product: 'auto', state: 'CA' }
  const first = await post(app, ndjson({ ...ann, phone: '+1 555 010 2000', source: 'partner.acme', score: 90 }, { ...cy, source: 'partner.b', score: 10 }), 'application/x-ndjson')
  assert.equal(first.json().inserted, 2, first.body)
  // What routing does to a lead (services/orchestrator/assignments.ts): an assignment, a score; an agent works it.
  const [agent] = await db.sql<{ id: string }>("INSERT INTO agents (name, email) VALUES ('Agent', 'agent@example.com') RETURNING id")
  await db.sql("INSERT INTO lead_assignments (lead_id, agent_id) SELECT id, $1 FROM leads WHERE email = 'ann.wipe@example.com'", [agent?.id])
  await db.sql("UPDATE leads SET score = 77, status = 'contacted', updated_at = now() WHERE email = 'ann.wipe@example.com'")

  // One batch, records of different shapes: each keeps what it left out and writes what it supplied.
  const again = await post(app, ndjson(ann, { ...cy, score: 55 }), 'application/x-ndjson')
  assert.equal(again.statusCode, 200, again.body)
  assert.deepEqual([again.json().updated, again.json().unchanged], [1, 1])
  assert.deepEqual(await storedLead(db, 'ann.wipe@example.com'), { phone: '+1 555 010 2000', source: 'partner.acme', score: 77, status: 'contacted', first_name: 'Ann' })
  assert.deepEqual(await storedLead(db, 'cy.keep@example.com'), { phone: null, source: 'partner.b', score: 55, status: 'new', first_name: 'Cy' })
  const [active] = await db.sql<{ n: number }>("SELECT count(*)::int AS n FROM lead_assignments WHERE status = 'active'")
  assert.equal(active?.n, 1)

  // A key sent as null is supplied: phone null clears it.
  const cleared = await post(app, ndjson({ ...ann, phone: null }, { ...cy, score: 55, source: 'partner.b' }), 'application/x-ndjson')
  assert.deepEqual([cleared.json().updated, cleared.json().unchanged], [1, 1])
  assert.deepEqual(await storedLead(db, 'ann.wipe@example.com'), { phone: null, source: 'partner.acme', score: 77, status: 'contacted', first_name: 'Ann' })
})

test('a CSV header of 16,000 columns is refused 400 IMPORT_BAD_HEADER at once, and /health/live answers meanwhile', async (t) => {
  const { app } = await setup(t)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const send = async (body: string): Promise<{ status: number, json: { code?: string, message?: string }, ms: number }> => {
    const started = performance.now()
    const res = await fetch(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'text/csv' }, body })
    return { status: res.status, json: await res.json() as { code?: string, message?: string }, ms: performance.now() - started }
  }
  // A normal import (after one that warms the pool) sets the scale, so the bound holds on a slow or busy machine.
  await send([CSV_HEADER, csvRow(0)].join('\n'))
  const normal: number[] = []
  for (let i = 1; i <= 3; i++) normal.push((await send([CSV_HEADER, csvRow(i)].join('\n'))).ms)
  const bound = Math.max(20 * (normal.sort((x, y) => x - y)[1] ?? 0), 500)

  // Short unique names (base 36), the line under IMPORT_MAX_RECORD_BYTES (65,536), so the header is read whole.
  const wide = Array.from({ length: 16000 }, (_, i) => i.toString(36)).join(',')
  assert.ok(wide.length < 65536, String(wide.length))
  let probing = true
  const probes: number[] = []
  const probe = (async () => {
    while (probing) {
      const started = performance.now()
      await (await fetch(`${url}/health/live`)).arrayBuffer()
      probes.push(performance.now() - started)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()
  const answers = []
  for (let i = 0; i < 3; i++) answers.push(await send(`${wide}\n${wide}\n`))
  probing = false
  await probe
  for (const a of answers) {
    assert.equal(a.status, 400)
    assert.equal(a.json.code, 'IMPORT_BAD_HEADER')
    assert.equal(a.json.message, 'The CSV header cannot be read: it has 16000 columns; an import reads at most 64')
    assert.ok(a.ms < bound, `answered in ${Math.round(a.ms)} ms; a normal import in ${normal.map(Math.round).join(', ')} ms`)
  }
  assert.ok(probes.length > 0)
  assert.ok(Math.max(...probes) < bound, `/health/live waited ${Math.round(Math.max(...probes))} ms`)
})

test('a CSV header of 64 columns, unknown ones left empty, is read; of 65 it is refused with the maximum', async (t) => {
  const { app } = await setup(t)
  const extra = (n: number): string[] => Array.from({ length: n }, (_, i) => `extra${i}`)
  const fits = await post(app, [[CSV_HEADER, ...extra(56)].join(','), [csvRow(1), ...extra(56).map(() => '')].join(',')].join('\n'))
  assert.equal(fits.statusCode, 200, fits.body)
  assert.equal(fits.json().inserted, 1)
  const over = await post(app, [[CSV_HEADER, ...extra(57)].join(','), [csvRow(1), ...extra(57).map(() => '')].join(',')].join('\n'))
  assert.equal(over.statusCode, 400, over.body)
  assert.deepEqual([over.json().code, over.json().message], ['IMPORT_BAD_HEADER', 'The CSV header cannot be read: it has 65 columns; an import reads at most 64'])
})

test('an empty import body is refused 400 instead of answered 200 with zero rows: IMPORT_BAD_HEADER for CSV, IMPORT_EMPTY for NDJSON', async (t) => {
  const { app } = await setup(t)
  // Blank lines are no records (white space and a byte order mark alone included).
  for (const body of ['', '\n\n', '\r\n', '\uFEFF\n  \n']) {
    const csv = await post(app, body)
    assert.equal(csv.statusCode, 400, csv.body)
    assert.deepEqual([csv.json().code, csv.json().message], ['IMPORT_BAD_HEADER', 'The CSV header cannot be read: the body is empty (send a header line, then one line per lead)'])
    const ndjson = await post(app, body, 'application/x-ndjson')
    assert.equal(ndjson.statusCode, 400, ndjson.body)
    assert.deepEqual([ndjson.json().code, ndjson.json().message], ['IMPORT_EMPTY', 'The import holds no records: send one JSON object per line'])
  }
  // A header without rows is a file of no leads, not a missing header.
  const headerOnly = await post(app, `${CSV_HEADER}\n`)
  assert.equal(headerOnly.statusCode, 200, headerOnly.body)
  assert.equal(headerOnly.json().rows, 0)
})

test('a lead an import created or overwrote is in the activity trail under the importing key, so a leaked leads:import key\'s changes can be found', async (t) => {
  const { app, db } = await setup(t)
  const { id, key } = await app.apiKeys.mint('partner import', ['leads:import'])
  const send = async (rows: string[]) => app.inject({ method: 'POST', url: '/data/v1/imports/leads', headers: { 'x-api-key': key, 'content-type': 'text/csv' }, payload: [CSV_HEADER, ...rows].join('\n') })
  const first = await send([csvRow(1), csvRow(2)])
  assert.equal(first.statusCode, 200, first.body)
  // Row 1 unchanged, row 2 overwritten: only the write is recorded.
  const second = await send([csvRow(1), csvRow(2, 'TX')])
  assert.deepEqual([second.json().unchanged, second.json().updated], [1, 1])
  const trail = await db.sql<{ email: string, type: string, details: unknown }>(
    'SELECT l.email, a.type, a.details FROM lead_activities a JOIN leads l ON l.id = a.lead_id WHERE a.actor = $1 ORDER BY a.id', [`key:${id}`])
  assert.deepEqual(trail, [
    { email: 'ann1@example.com', type: 'created', details: { via: 'import' } },
    { email: 'ann2@example.com', type: 'created', details: { via: 'import' } },
    { email: 'ann2@example.com', type: 'updated', details: { via: 'import' } }
  ])
})

test('a client that drops its connection mid-import is IMPORT_ABORTED, its doing, logged at info: not IMPORT_INTERRUPTED 503 with an error-level line and stack', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk: Buffer, _e, done) { lines.push(chunk.toString()); done() } }))
  const app = await buildDataService(loadDataServiceConfig({ dotenv: false, env: testEnv(db, { CACHE_PREFIX: `${uniqueName('ds')}:`, IMPORT_BATCH_SIZE: '2' }) }), { logger })
  t.after(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const { request } = await import('node:http')
  const req = request(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' } })
  req.on('error', () => {})
  for (let i = 0; i < 5; i++) req.write(JSON.stringify({ firstName: `Gone${i}`, lastName: 'Lee', email: `gone${i}@example.com`, product: 'life', state: 'NY' }) + '\n')
  const committed = async (): Promise<number> => (await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads'))[0]?.n ?? 0
  for (let i = 0; i < 200 && await committed() < 4; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  req.destroy()
  const answered = (): Array<Record<string, unknown>> => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg !== 'incoming request' && l.res === undefined && (l.code !== undefined || (l.err as { code?: string } | undefined)?.code !== undefined))
  for (let i = 0; i < 200 && !answered().some((l) => String(l.msg).startsWith('the import stopped') || l.msg === 'request failed'); i++) await new Promise((resolve) => setTimeout(resolve, 25))
  const said = answered().filter((l) => l.msg !== undefined && !String(l.msg).startsWith('import interrupted'))
  assert.equal(said.length, 1, JSON.stringify(said))
  assert.deepEqual([said[0]?.level, said[0]?.code, said[0]?.statusCode], [30, 'IMPORT_ABORTED', 400], JSON.stringify(said[0]))
})

test('a client that hangs up while a hook still waits (a slow key lookup or limiter) frees its import place: the next import is taken, not answered 429 for the life of the process', async (t) => {
  const { app } = await setup(t, { IMPORT_MAX_CONCURRENT: '1' })
  // Stands for a hook waiting on Redis or PostgreSQL: the import's request is held before its handler runs.
  let release = (): void => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  let holding = true
  let reached = (): void => {}
  const waiting = new Promise<void>((resolve) => { reached = resolve })
  let hungUp = (): void => {}
  const seenClosed = new Promise<void>((resolve) => { hungUp = resolve })
  app.addHook('onRequest', async (request) => {
    if (!holding || !request.url.startsWith('/data/v1/imports')) return
    holding = false
    request.raw.socket.once('close', () => hungUp())
    reached()
    await held
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const { request } = await import('node:http')
  const gone = request(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' } })
  gone.on('error', () => {})
  gone.write(JSON.stringify({ firstName: 'Gone', lastName: 'Lee', email: 'gone@example.com', product: 'life', state: 'NY' }) + '\n')
  await waiting
  gone.destroy()
  // The server has seen the connection close before the handler runs.
  await seenClosed
  await new Promise((resolve) => setTimeout(resolve, 50))
  release()
  // Before, the handler piped a request stream destroyed before it listened, which never ended: the import waited
  // on it forever and its place was never given back.
  let status = 0
  for (let i = 0; i < 50 && status !== 200; i++) {
    const res = await fetch(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' }, body: JSON.stringify({ firstName: 'Next', lastName: 'Lee', email: `next${i}@example.com`, product: 'auto', state: 'CA' }) })
    status = res.status
    await res.arrayBuffer()
    if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.equal(status, 200, 'the next import was taken')
})

test('a stream that fails after its last batch was written names the line after the last row read as where to resume, not that batch\'s first line', async (t) => {
  const { app, db } = await setup(t)
  // Header on line 1, rows on lines 2 and 3: one batch of 2, written; then the stream fails.
  async function * cut (): AsyncGenerator<Buffer> {
    yield Buffer.from([CSV_HEADER, csvRow(1), csvRow(2)].join('\n') + '\n')
    await new Promise((resolve) => setTimeout(resolve, 50))
    throw Object.assign(new Error('the client went away'), { code: 'ECONNRESET' })
  }
  await assert.rejects(importLeads(app.db, Readable.from(cut()), 'csv', { batchSize: 2 }), (e: ImportInterruptedError) => {
    // Before, line 2: the first line of the batch already written.
    assert.equal(e.line, 4)
    assert.deepEqual([e.report.inserted, e.report.rows], [2, 2])
    return true
  })
  const [count] = await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  assert.equal(count?.n, 2)
})

/** An NDJSON import over a real socket: `send` writes leads, the body stays open; the answer comes when it comes. */
async function streamingImport (url: string): Promise<{ send: (from: number, n: number) => void, answer: Promise<{ status: number, body: Record<string, unknown>, at: number }>, close: () => void }> {
  const { request } = await import('node:http')
  const req = request(`${url}/data/v1/imports/leads`, { method: 'POST', headers: { ...SERVICE_HEADERS, 'content-type': 'application/x-ndjson' } })
  req.on('error', () => {})
  const answer = new Promise<{ status: number, body: Record<string, unknown>, at: number }>((resolve) => {
    req.on('response', (r) => {
      let text = ''
      r.on('data', (c: Buffer) => { text += c.toString() })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, at: performance.now() }))
    })
  })
  // In one write: the lines arrive in one chunk, which the import's line reader holds whole.
  const send = (from: number, n: number): void => {
    req.write(Array.from({ length: n }, (_, k) => JSON.stringify({ firstName: `Slow${from + k}`, lastName: 'Lee', email: `slow${from + k}@example.com`, product: 'life', state: 'NY' }) + '\n').join(''))
  }
  return { send, answer, close: () => { req.destroy() } }
}

test('an import the database slows past REQUEST_TIMEOUT_MS is answered 503 IMPORT_INTERRUPTED before it, with its report and the line to resume from, not 408 by Node with no report', async (t) => {
  const { app, db } = await setup(t, { IMPORT_BATCH_SIZE: '5', REQUEST_TIMEOUT_MS: '4000' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const started = performance.now()
  const upload = await streamingImport(url)
  t.after(() => { upload.close() })
  upload.send(0, 5)
  const committed = async (): Promise<number> => (await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads'))[0]?.n ?? 0
  for (let i = 0; i < 200 && await committed() < 5; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  // The next batch waits on a lock the test holds: the database takes no more rows.
  const { default: pg } = await import('pg')
  const locker = new pg.Client({ connectionString: db.url })
  await locker.connect()
  t.after(() => locker.end())
  await locker.query('BEGIN')
  await locker.query(`LOCK TABLE "${db.schema}".leads IN SHARE MODE`)
  // Two batches more: the first waits on the lock, the second is already read when the time runs out.
  upload.send(5, 10)
  const answer = await upload.answer
  await locker.query('ROLLBACK')
  // The batch being written commits once the lock goes; nothing after it is written, though its lines were read.
  for (let i = 0; i < 100 && await committed() < 10; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.equal(await committed(), 10, 'no batch is written after the answer')
  // Before, Node answered 408 REQUEST_TIMEOUT at 4 s, without the report or the line.
  assert.equal(answer.status, 503, JSON.stringify(answer.body))
  assert.equal(answer.body.code, 'IMPORT_INTERRUPTED')
  assert.ok(answer.at - started < 4000, `answered after ${Math.round(answer.at - started)} ms`)
  const details = answer.body as { line: number, report: { inserted: number } }
  assert.equal(details.report.inserted, 5)
  assert.equal(details.line, 6, 'the first line of the batch being written')
  assert.match(String(answer.body.message), /resume it from line 6/)
})

test('an import whose client sends too slowly is answered 408 REQUEST_TIMEOUT before Node\'s own, with its report and the line to resume from', async (t) => {
  const { app, db } = await setup(t, { IMPORT_BATCH_SIZE: '5', REQUEST_TIMEOUT_MS: '3000' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const upload = await streamingImport(url)
  t.after(() => { upload.close() })
  upload.send(0, 7)
  const answer = await upload.answer
  assert.equal(answer.status, 408, JSON.stringify(answer.body))
  assert.equal(answer.body.code, 'REQUEST_TIMEOUT')
  const details = answer.body as { line: number, report: { inserted: number } }
  // Five rows written; the two of the batch not full yet are not, and are where to resume.
  assert.equal(details.report.inserted, 5)
  assert.equal(details.line, 6)
  assert.equal((await db.sql<{ n: number }>('SELECT count(*)::int AS n FROM leads'))[0]?.n, 5)
})
