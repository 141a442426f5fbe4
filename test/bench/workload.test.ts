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

test('each bench connection replays a short sequence whole, with its keys in equal turns, and a PATCH with its JSON body', async (t) => {
  const seen: Array<{ address: string, key: string, line: string, type?: string, body: string }> = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => {
      const type = req.headers['content-type']
      seen.push({ address: req.socket.remoteAddress ?? '', key: String(req.headers['x-api-key']), line: `${req.method} ${req.url}`, body, ...(type ? { type } : {}) })
      res.end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.close() })
  const sequence = [
    { method: 'GET' as const, path: '/a' }, { method: 'GET' as const, path: '/b' }, { method: 'PATCH' as const, path: '/c', body: '{"status":"won"}' },
    { method: 'GET' as const, path: '/d' }, { method: 'GET' as const, path: '/e' }
  ]
  const callers = ['k0', 'k1', 'k2', 'k3']
  const result = await replay(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { seconds: 1, connections: 2, sequence, offset: 0, callers, onResponse: () => {} }).done
  assert.equal(result.errors, 0)
  for (const address of [sourceAddress(0), sourceAddress(1)]) {
    const own = seen.filter((s) => s.address === address)
    assert.ok(own.length > 100, `${address} sent ${own.length}`)
    assert.deepEqual([...new Set(own.map((s) => s.line))].sort(), ['GET /a', 'GET /b', 'GET /d', 'GET /e', 'PATCH /c'], 'the whole sequence')
    const turns = Object.values(Object.groupBy(own, (s) => s.key)).map((group) => group?.length ?? 0)
    assert.equal(turns.length, 2, 'its two keys')
    assert.ok(Math.max(...turns) - Math.min(...turns) <= 1, `keys in equal turns: ${turns.join(', ')}`)
  }
  const patches = seen.filter((s) => s.line === 'PATCH /c')
  assert.ok(patches.every((s) => s.body === '{"status":"won"}' && s.type === 'application/json'))
  assert.ok(seen.filter((s) => s.line !== 'PATCH /c').every((s) => s.body === '' && s.type === undefined))
})
