import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { edgeTimingRows, withEdgeTimingLog } from '../../scripts/bench/edge-timing.js'
import { preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'
import { freePort } from '../helpers/ports.js'

test('the bench\'s timing log runs with the shipped nginx.conf and tells a verdict renewed, a cache miss, a hit and a PATCH apart', async (t) => {
  const upstream = createServer((req, res) => {
    if (req.url === '/api/v1/edge/auth') return res.writeHead(204, { 'x-edge-scope': 'leads:read' }).end()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}')
  })
  const upstreamPort = await freePort()
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve))
  t.after(() => { upstream.close() })
  const [publicPort, statusPort, spare1, spare2, keyGatePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const config = templateConfig({ api: [upstreamPort], dataService: spare1, orchestrator: spare2, publicPort, statusPort, keyGatePort })
  const prefix = preparePrefix(withEdgeTimingLog(config, 'edge-timing.log'))
  const log = join(prefix, 'edge-timing.log')
  await startNginx(t, prefix, publicPort)
  // After NGINX's start, whose readiness probe it logs too.
  const from = Date.now()
  const ask = async (method = 'GET'): Promise<string | null> => {
    const res = await fetch(`http://127.0.0.1:${publicPort}/api/v1/leads?limit=3`, { method, headers: { 'x-api-key': 'key-1', 'content-type': 'application/json' }, ...(method === 'PATCH' ? { body: '{}' } : {}) })
    await res.arrayBuffer()
    return res.headers.get('x-cache-status')
  }
  assert.equal(await ask(), 'MISS')
  assert.equal(await ask(), 'HIT')
  await ask('PATCH')
  await sleep(1500) // the log is flushed every second
  const { rows } = edgeTimingRows(readFileSync(log, 'utf8'), from, Date.now())
  assert.deepEqual(rows.map((r) => r.kind).sort(), ['HIT', 'MISS +auth', 'PATCH no cache'])
  assert.equal(rows.reduce((s, r) => s + r.requests, 0), 3)
})
