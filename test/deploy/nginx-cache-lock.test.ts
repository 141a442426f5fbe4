import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { freePort } from '../helpers/ports.js'
import { preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'

// The shipped nginx.conf in front of a stand-in api that answers in 20 ms. When many callers ask at once for what
// NGINX does not hold yet (a list no one read, the verdict on a key it has not seen), one request fetches it and the
// others wait on the cache lock. A waiter looks at the lock again only when its timer fires, every 500 ms at most,
// so with a lock timeout above that every waiter was held about half a second for an answer ready in 20 ms.

const API_MS = 20
const CALLERS = 10
/** Under NGINX's 500 ms lock poll, with room for a busy machine: a waiter held for a poll takes at least 500 ms. */
const WITHIN_MS = 400

const cleanups: Array<() => unknown> = []
const scope = { after: (fn: () => unknown) => { cleanups.push(fn) } }
const asked = { verdicts: 0, lists: 0 }
let edge = ''

before(async () => {
  const api = createServer((req, res) => {
    const verdict = req.url?.startsWith('/api/v1/edge/auth') === true
    if (verdict) asked.verdicts++
    else asked.lists++
    setTimeout(() => {
      if (verdict) {
        res.writeHead(204, { 'x-edge-scope': 'leads:read' }).end()
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url }))
      }
    }, API_MS)
  })
  const apiPort = await freePort()
  await new Promise<void>((resolve) => api.listen(apiPort, '127.0.0.1', resolve))
  cleanups.push(() => new Promise((resolve) => api.close(resolve)))
  const [publicPort, statusPort, keyGatePort, dataService, orchestrator] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const prefix = preparePrefix(templateConfig({ api: [apiPort], dataService, orchestrator, publicPort, statusPort, keyGatePort }))
  await startNginx(scope, prefix, publicPort)
  edge = `http://127.0.0.1:${publicPort}`
})

after(async () => {
  for (const fn of cleanups.reverse()) await fn()
})

/** CALLERS GETs of `path` with `key` at once: each answer's status, body and time in ms. */
async function together (path: string, key: string): Promise<Array<{ status: number, body: string, ms: number }>> {
  return Promise.all(Array.from({ length: CALLERS }, async () => {
    const t0 = performance.now()
    const res = await fetch(`${edge}${path}`, { headers: { 'x-api-key': key } })
    const body = await res.text()
    return { status: res.status, body, ms: performance.now() - t0 }
  }))
}

const newKey = (): string => `lck_${randomBytes(45).toString('base64url')}`

test('callers asking at once for a list NGINX does not hold yet all get its answer within 400 ms, not held for NGINX\'s 500 ms lock poll, when the api answers in 20 ms', async (t) => {
  const key = newKey()
  await together('/api/v1/leads?warm=verdict', key) // this key's verdict, so only the list is missing below
  const lists = asked.lists
  const answers = await together('/api/v1/leads?status=new&lock=1', key)
  t.diagnostic(`times ${answers.map((a) => Math.round(a.ms)).join(', ')} ms; the api asked for the list ${asked.lists - lists} times`)
  for (const a of answers) {
    assert.equal(a.status, 200)
    assert.deepEqual(JSON.parse(a.body), { url: '/api/v1/leads?status=new&lock=1' })
  }
  assert.ok(Math.max(...answers.map((a) => a.ms)) < WITHIN_MS, `the slowest caller took ${Math.round(Math.max(...answers.map((a) => a.ms)))} ms`)
})

test('callers presenting at once a key NGINX has no verdict for are all answered within 400 ms, not held for NGINX\'s 500 ms lock poll, when the api answers in 20 ms', async (t) => {
  const verdicts = asked.verdicts
  const answers = await together('/api/v1/leads?status=new&lock=2', newKey())
  t.diagnostic(`times ${answers.map((a) => Math.round(a.ms)).join(', ')} ms; the api asked for a verdict ${asked.verdicts - verdicts} times`)
  for (const a of answers) assert.equal(a.status, 200)
  assert.ok(asked.verdicts - verdicts >= 1)
  assert.ok(Math.max(...answers.map((a) => a.ms)) < WITHIN_MS, `the slowest caller took ${Math.round(Math.max(...answers.map((a) => a.ms)))} ms`)
})
