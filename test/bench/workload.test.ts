import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { replay, sourceAddress } from '../../scripts/bench/workload.js'

test('the bench load comes from many addresses, each with its own keys, not every key from one address (which the edge key gate stops)', async (t) => {
  const seen = new Map<string, Set<string>>()
  const server = createServer((req, res) => {
    const address = req.socket.remoteAddress ?? ''
    let keys = seen.get(address)
    if (!keys) seen.set(address, keys = new Set())
    keys.add(String(req.headers['x-api-key']))
    res.end('{}')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.close() })
  const callers = Array.from({ length: 20 }, (_, i) => `key-${i}`)
  const sequence = [{ method: 'GET' as const, path: '/a' }, { method: 'PATCH' as const, path: '/b', body: '{}' }]
  const result = await replay(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { seconds: 1, connections: 5, sequence, offset: 0, callers, onResponse: () => {} }).done
  assert.equal(result.errors, 0)
  assert.deepEqual([...seen.keys()].sort(), [0, 1, 2, 3, 4].map(sourceAddress).sort())
  for (let c = 0; c < 5; c++) {
    // Caller j goes out on connection j mod 5 only.
    assert.deepEqual([...(seen.get(sourceAddress(c)) ?? [])].sort(), callers.filter((_, j) => j % 5 === c).sort())
  }
})

test('bench source addresses are distinct loopback addresses past 127.0.0.1', () => {
  assert.equal(sourceAddress(0), '127.0.0.2')
  assert.equal(sourceAddress(253), '127.0.0.255')
  assert.equal(sourceAddress(254), '127.0.1.0')
  assert.equal(new Set(Array.from({ length: 5000 }, (_, i) => sourceAddress(i))).size, 5000)
})
