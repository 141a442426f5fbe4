import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createConnection } from 'node:net'
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../services/api/app.js'
import { createTestSchema, SERVICE_HEADERS, testApiConfig, type TestSchema } from '../helpers/database.js'
import { startDataService, startOrchestrator } from '../helpers/services.js'

const REQUEST_TIMEOUT_MS = 1000
// Node checks deadlines once a second (the chassis sets connectionsCheckingInterval), plus a busy machine's lag.
// Counted from when the server accepted the connection, where its clock starts: 200 connections opened at once on a
// busy machine wait up to a second in the accept queue first, which is the client's wait but not the bound's.
const CLOSE_WITHIN_MS = REQUEST_TIMEOUT_MS + 1000 + 1500

interface Outcome { closedAfterMs: number, received: string }

/** When the server accepted each connection, by the client's port. */
function acceptTimes (server: Server): Map<number, number> {
  const accepted = new Map<number, number>()
  server.on('connection', (socket) => { if (socket.remotePort !== undefined) accepted.set(socket.remotePort, performance.now()) })
  return accepted
}

/**
 * A client that sends the request head at once (or, with `slowHead`, the head itself a byte at a time), then the body
 * one byte every 200 ms, far slower than REQUEST_TIMEOUT_MS allows for its declared length.
 */
async function slowRequest (url: string, path: string, contentType: string, slowHead = false, accepted?: Map<number, number>): Promise<Outcome> {
  const { hostname, port } = new URL(url)
  const socket = createConnection({ host: hostname, port: Number(port) })
  await once(socket, 'connect')
  const connectedAt = performance.now()
  const localPort = socket.localPort
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  const head = `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: ${contentType}\r\nContent-Length: 1000\r\nX-Service-Key: ${SERVICE_HEADERS['x-service-key']}\r\n\r\n`
  let sent = slowHead ? 0 : head.length
  if (!slowHead) socket.write(head)
  const drip = setInterval(() => {
    if (socket.destroyed) return
    socket.write(sent < head.length ? head[sent] ?? '' : 'a')
    sent++
  }, 200)
  // Past the promise the client hangs up itself, and the outcome says the server had not.
  let gaveUp = false
  const giveUp = setTimeout(() => { gaveUp = true; socket.destroy() }, CLOSE_WITHIN_MS + 4000)
  // Not events.once: it rejects on 'error', and a server that closes a refused request's connection while the client
  // still drips its body makes the kernel answer the drip with a reset (ECONNRESET), after the answer was read.
  await new Promise((resolve) => socket.once('close', resolve))
  clearInterval(drip)
  clearTimeout(giveUp)
  const started = accepted?.get(localPort ?? 0) ?? connectedAt
  return { closedAfterMs: gaveUp ? Infinity : performance.now() - started, received }
}

async function assertAllCut (app: FastifyInstance, url: string, path: string, contentType: string, count: number, alsoInBody: Record<string, unknown> = {}): Promise<number> {
  const accepted = acceptTimes(app.server)
  const outcomes = await Promise.all([
    ...Array.from({ length: count }, () => slowRequest(url, path, contentType, false, accepted)),
    slowRequest(url, path, contentType, true, accepted)
  ])
  for (const [i, o] of outcomes.entries()) {
    assert.ok(o.closedAfterMs <= CLOSE_WITHIN_MS, `a slow request stayed open ${o.closedAfterMs.toFixed(0)} ms`)
    assert.match(o.received, /^HTTP\/1\.1 408 /)
    const body = JSON.parse(o.received.slice(o.received.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
    assert.deepEqual(body, { statusCode: 408, code: 'REQUEST_TIMEOUT', error: 'Request Timeout', message: `The request did not arrive within ${REQUEST_TIMEOUT_MS} ms`, ...(i < count ? alsoInBody : {}) })
  }
  return Math.max(...outcomes.map((o) => o.closedAfterMs))
}

async function listen (t: { after: (fn: () => Promise<void>) => void }, app: FastifyInstance): Promise<string> {
  t.after(() => app.close())
  return app.listen({ host: '127.0.0.1', port: 0 })
}

let db: TestSchema
test.before(async () => { db = await createTestSchema() })
test.after(async () => { await db.drop() })

test('a POST body sent a byte at a time is cut with 408 REQUEST_TIMEOUT after REQUEST_TIMEOUT_MS, not held open (api)', async (t) => {
  const app = await buildApp(testApiConfig(db, { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), CACHE_ENABLED: 'false' }))
  const url = await listen(t, app)
  const slowest = await assertAllCut(app, url, '/api/v1/leads', 'application/json', 200)
  t.diagnostic(`api: 201 slow requests, the last closed after ${slowest.toFixed(0)} ms (REQUEST_TIMEOUT_MS=${REQUEST_TIMEOUT_MS})`)
  // The bound costs a request that arrives in time nothing.
  const res = await fetch(`${url}/api/v1/leads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ firstName: 'Quick', lastName: 'Client', email: `quick.${process.pid}@example.com`, product: 'auto', state: 'CA' }) })
  assert.equal(res.status, 201)
})

test('a slow import upload and a slow routing request are cut after REQUEST_TIMEOUT_MS (data-service, orchestrator)', async (t) => {
  // Room for every slow import at once: this is about the arrival bound, not the limit on concurrent imports.
  const env = { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), CACHE_ENABLED: 'false', IMPORT_MAX_CONCURRENT: '50' }
  const data = await startDataService(t, db, env)
  // An import answers the timeout itself, with its report and where to resume: here, nothing was read. The one whose
  // head is slow never reaches the route, and gets Node's 408.
  await assertAllCut(data.app, data.url, '/data/v1/imports/leads', 'text/csv', 20, { line: 1, report: { rows: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0, rejections: [], rejectionsTruncated: false } })
  const orchestrator = await startOrchestrator(t, db, data.url, env, true)
  await assertAllCut(orchestrator.app, orchestrator.url, '/orchestrator/v1/route-batch', 'application/json', 20)
})

test('an import whose head took most of REQUEST_TIMEOUT_MS to arrive still answers the timeout itself, with its report, when Node\'s deadline comes before its own', async (t) => {
  // The import's own deadline counts from its handler: 6 s after it here. Node's counts from the first byte, so a head
  // that arrives 6.5 s after it puts Node's (checked once a second: 8 to 9 s) 3.5 s or more before the import's (12.5 s).
  const timeoutMs = 8000
  const headAfterMs = 6500
  const data = await startDataService(t, db, { REQUEST_TIMEOUT_MS: String(timeoutMs), CACHE_ENABLED: 'false' })
  const { hostname, port } = new URL(data.url)
  const socket = createConnection({ host: hostname, port: Number(port) })
  await once(socket, 'connect')
  const connectedAt = performance.now()
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  const head = `POST /data/v1/imports/leads HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\nX-Service-Key: ${SERVICE_HEADERS['x-service-key']}\r\n\r\n`
  socket.write(head.slice(0, 10))
  await new Promise((resolve) => setTimeout(resolve, headAfterMs))
  socket.write(head.slice(10))
  const drip = setInterval(() => { if (!socket.destroyed) socket.write('a') }, 200)
  const giveUp = setTimeout(() => socket.destroy(), timeoutMs + 8000)
  await new Promise((resolve) => socket.once('close', resolve))
  clearInterval(drip)
  clearTimeout(giveUp)
  const closedAfterMs = performance.now() - connectedAt
  assert.match(received, /^HTTP\/1\.1 408 /)
  const body = JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
  // Before, Node's plain 408 came first: no line to resume from, no report.
  assert.deepEqual(body, { statusCode: 408, code: 'REQUEST_TIMEOUT', error: 'Request Timeout', message: `The request did not arrive within ${timeoutMs} ms`, line: 1, report: { rows: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0, rejections: [], rejectionsTruncated: false } })
  assert.equal(received.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer on the connection')
  // Answered at Node's deadline, within a second of REQUEST_TIMEOUT_MS (and its check), not at the import's own.
  assert.ok(closedAfterMs < timeoutMs + 2500, `answered and closed ${closedAfterMs.toFixed(0)} ms after the first byte`)
  t.diagnostic(`answered and closed ${closedAfterMs.toFixed(0)} ms after the first byte`)
})

test('REQUEST_TIMEOUT_MS is the bound: a body that takes longer than 1 s arrives whole when the setting allows 5 s', async (t) => {
  const app = await buildApp(testApiConfig(db, { REQUEST_TIMEOUT_MS: '5000', CACHE_ENABLED: 'false' }))
  const url = await listen(t, app)
  const { hostname, port } = new URL(url)
  const body = JSON.stringify({ firstName: 'Slow', lastName: 'Butfine', email: `slow.${process.pid}@example.com`, product: 'auto', state: 'CA' })
  const socket = createConnection({ host: hostname, port: Number(port) })
  await once(socket, 'connect')
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.write(`POST /api/v1/leads HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`)
  // Two halves 2 s apart: past the 1 s of the other tests, within the 5 s set here.
  socket.write(body.slice(0, 10))
  await new Promise((resolve) => setTimeout(resolve, 2000))
  socket.write(body.slice(10))
  await once(socket, 'close')
  assert.match(received, /^HTTP\/1\.1 201 /)
})

test('an import refused before its body is read gets one answer and the connection closes, never a second 408 on it', async (t) => {
  const data = await startDataService(t, db, { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), CACHE_ENABLED: 'false', IMPORT_MAX_CONCURRENT: '1' })
  const holder = slowRequest(data.url, '/data/v1/imports/leads', 'text/csv')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const refused = await slowRequest(data.url, '/data/v1/imports/leads', 'text/csv')
  assert.match(refused.received, /^HTTP\/1\.1 429 /)
  assert.equal(refused.received.match(/HTTP\/1\.1 /g)?.length, 1, `one answer on the connection: ${refused.received}`)
  assert.ok(refused.closedAfterMs < REQUEST_TIMEOUT_MS, `closed after the 429 at once, not held until the request timeout (${refused.closedAfterMs.toFixed(0)} ms)`)
  await holder
})
