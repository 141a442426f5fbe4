import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { freePort } from '../helpers/ports.js'
import { preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'

// The shipped nginx.conf in front of a stand-in api that answers in 20 ms, or slower when a test says so. When many
// callers ask at once for what NGINX does not hold yet (a list no one read, the verdict on a key it has not seen), one
// request fetches it and the others wait on the cache lock. A waiter looks at the lock again only when its timer
// fires, every 500 ms at most, so with a lock timeout above that every waiter was held about half a second for an
// answer ready in 20 ms. Lists wait 50 ms at most; a new key's verdict still waits for the lock (see the last test).

const API_MS = 20
const CALLERS = 10
/** Under NGINX's 500 ms lock poll, with room for a busy machine: a waiter held for a poll takes at least 500 ms. */
const WITHIN_MS = 400

/** How long the stand-in api takes to answer a verdict and a list, ms; a test may slow it down. */
const slowness = { verdict: API_MS, list: API_MS }

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
    }, verdict ? slowness.verdict : slowness.list)
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

/** `callers` GETs of `path` with `key` at once: each answer's status, body and time in ms. */
async function together (path: string, key: string, callers = CALLERS): Promise<Array<{ status: number, body: string, ms: number }>> {
  return Promise.all(Array.from({ length: callers }, async () => {
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

test('a list the api is slow to fill (200 ms) is answered to every caller asking at once, each past the 50 ms lock going to the api itself', async (t) => {
  const key = newKey()
  await together('/api/v1/leads?warm=verdict-2', key)
  slowness.list = 200
  t.after(() => { slowness.list = API_MS })
  const lists = asked.lists
  const answers = await together('/api/v1/leads?status=new&lock=3', key)
  t.diagnostic(`times ${answers.map((a) => Math.round(a.ms)).join(', ')} ms; the api asked for the list ${asked.lists - lists} times`)
  for (const a of answers) assert.equal(a.status, 200)
  assert.ok(asked.lists - lists > 1, 'the waiters went to the api after the lock timeout')
})

test('100 callers presenting at once from one address a key NGINX has no verdict for, while the api takes 200 ms to answer it, are all answered: they wait for its one verdict instead of each passing the key gate (a burst of 60 per address) and getting 429', async (t) => {
  slowness.verdict = 200
  t.after(() => { slowness.verdict = API_MS })
  const verdicts = asked.verdicts
  const answers = await together('/api/v1/leads?status=new&lock=4', newKey(), 100)
  const statuses: Record<number, number> = {}
  for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1
  t.diagnostic(`statuses ${JSON.stringify(statuses)}; the api asked for a verdict ${asked.verdicts - verdicts} times; slowest ${Math.round(Math.max(...answers.map((a) => a.ms)))} ms`)
  assert.deepEqual(statuses, { 200: 100 })
  assert.equal(asked.verdicts - verdicts, 1)
})
