import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { createTestSchema, testEnv, uniqueName, SERVICE_HEADERS, type TestSchema } from '../../test/helpers/database.js'
import { buildDataService } from './app.js'
import { loadDataServiceConfig } from './config.js'

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
    'Ann,Lee,x"someone@example.com",,auto,CA,web,1', // line 2: a stray quote; csv-parse says `value is "x\"someone..."`
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
  assert.deepEqual(ndjson.json().rejections, [{ line: 1, reason: 'an unknown field' }, { line: 2, reason: 'unknown field nickname' }])
})
