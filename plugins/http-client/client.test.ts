import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createServiceClient } from './client.js'
import { eventually } from '../../test/helpers/eventually.js'

test('invalid service client options throw one coded error naming each problem', () => {
  assert.throws(() => createServiceClient({ name: 'data-service', baseUrl: 'ftp://127.0.0.1', breakerThreshold: 0, timeoutMs: -1, retries: 1.5, connections: 0, retryBaseMs: -1 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'HTTP_CLIENT_INVALID_OPTIONS')
    assert.match(e.message, /^Invalid service client options for data-service: /)
    for (const problem of ['baseUrl must be an http or https URL', 'timeoutMs must be a positive number', 'breakerThreshold must be a positive integer',
      'connections must be a positive integer', 'retries must be a non-negative integer', 'retryBaseMs must be a non-negative number']) assert.match(e.message, new RegExp(problem))
    return true
  })
})

test('one upstream stall under 20 concurrent calls does not open the circuit', async (t) => {
  let stalled = false
  const held: ServerResponse[] = []
  const upstream = createServer((_req, res) => {
    if (stalled) held.push(res)
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const res of held) res.destroy(); upstream.close() })
  const client = createServiceClient({ name: 'stalling', baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, timeoutMs: 300, retries: 0, breakerThreshold: 5, breakerCooldownMs: 60_000, connections: 32 })
  t.after(() => client.close())
  assert.equal((await client.request({ path: '/x' })).status, 200)
  stalled = true
  // All 20 time out together: one stall of the upstream, one failure, not 20 (which opened the circuit for its cooldown).
  const calls = await Promise.allSettled(Array.from({ length: 20 }, () => client.request({ path: '/x' })))
  assert.ok(calls.every((c) => c.status === 'rejected' && (c.reason as { code?: string }).code === 'UPSTREAM_UNAVAILABLE'))
  assert.equal(client.breakerState, 'closed')
  stalled = false
  // A busy machine may take a call past its budget: the point is that the circuit lets calls through again.
  await eventually(async () => (await client.request({ path: '/x' }).catch(() => undefined))?.status === 200, 'calls answered again')
})

test('an upstream that stays stalled still opens the circuit after threshold waves of calls', async (t) => {
  const held: ServerResponse[] = []
  const upstream = createServer((_req, res) => { held.push(res) })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const res of held) res.destroy(); upstream.close() })
  const client = createServiceClient({ name: 'stalled', baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, timeoutMs: 100, retries: 0, breakerThreshold: 3, breakerCooldownMs: 60_000, connections: 32 })
  t.after(() => client.close())
  for (let wave = 1; wave <= 3; wave++) {
    await Promise.allSettled(Array.from({ length: 10 }, () => client.request({ path: '/x' })))
    assert.equal(client.breakerState, wave < 3 ? 'closed' : 'open', `after wave ${wave}`)
  }
  await assert.rejects(client.request({ path: '/x' }), /circuit open/)
})
