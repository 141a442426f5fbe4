import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../helpers/ports.js'
import { preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'

// The shipped nginx.conf in front of a stand-in api that answers slowly, as a loaded api does: while the api is
// slow every client can be waiting on it at once, and NGINX holds that many connections to it and to its key gate.
// An idle pool smaller than that closes the surplus when the burst ends and opens them again on the next one.

/** Concurrent callers per burst: more than the idle pools held before (64 to the api, 16 to the key gate). */
const CALLERS = 150
const ADDRESSES = 10

/** A GET from a loopback address of our choosing, on a connection of its own; resolves with the status. */
async function getFrom (url: string, key: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { 'x-api-key': key }, localAddress, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** NGINX's count of connections accepted so far, on every server of its (the key gate's included). */
async function accepted (status: string): Promise<number> {
  const text = await (await fetch(`${status}/stub_status`)).text()
  const counts = /\n\s*(\d+)\s+\d+\s+\d+\s*\n/.exec(text)
  assert.ok(counts, text)
  return Number(counts[1])
}

test('a burst of callers waiting on a slow api opens no new connections to the api or the key gate once NGINX has held as many', async () => {
  let opened = 0
  const upstream = createServer((req, res) => {
    // Every verdict and answer takes a while, so a burst's requests are all in flight together.
    setTimeout(() => {
      if (req.url === '/api/v1/edge/auth') return res.writeHead(204, { 'x-edge-scope': 'leads:read' }).end()
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}')
    }, 300)
  })
  upstream.on('connection', () => { opened++ })
  // The api's own keep-alive outlasts NGINX's (Fastify's default is 72 s; NGINX's keepalive_timeout 60 s).
  upstream.keepAliveTimeout = 75_000
  const upstreamPort = await freePort()
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve))
  const local: Array<() => unknown> = [() => { upstream.closeAllConnections(); upstream.close() }]
  try {
    const [publicPort, statusPort, spare1, spare2, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
    // One worker: the idle pools are per worker, and one worker takes the whole burst.
    const prefix = preparePrefix(templateConfig({ api: [upstreamPort], dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort }, { NGINX_WORKER_PROCESSES: '1' }))
    await startNginx({ after: (fn) => { local.push(fn) } }, prefix, publicPort)
    const status = `http://127.0.0.1:${statusPort}`
    // Each caller a key NGINX has no verdict for yet and a list it has not cached: a verdict through the key gate,
    // then an answer from the api. Ten client addresses keep each under the key gate's per-address budget.
    let n = 0
    const burst = async (): Promise<number[]> => Promise.all(Array.from({ length: CALLERS }, async (_, i) => {
      const key = `lck_${randomBytes(9).toString('hex')}_${randomBytes(24).toString('base64url')}`
      return getFrom(`http://127.0.0.1:${publicPort}/api/v1/leads?limit=${++n}`, key, `127.0.1.${2 + (i % ADDRESSES)}`)
    }))
    assert.deepEqual(new Set(await burst()), new Set([200]))
    await sleep(200)
    const [opened0, accepted0] = [opened, await accepted(status)]
    assert.deepEqual(new Set(await burst()), new Set([200]))
    await sleep(200)
    const toApi = opened - opened0
    // Accepted by NGINX: the burst's own client connections, this status request, and any new one to the key gate.
    const toKeyGate = await accepted(status) - accepted0 - CALLERS - 1
    assert.ok(toApi <= 2 && toKeyGate <= 2, `the second burst opened ${toApi} new connections to the api and ${toKeyGate} to the key gate`)
  } finally {
    for (const fn of local.reverse()) await fn()
  }
})
