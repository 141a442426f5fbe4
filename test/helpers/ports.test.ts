import { test } from 'node:test'
import assert from 'node:assert/strict'
import { freePort } from './ports.js'

test('freePort never hands out a port twice in one process, though the kernel offers a port just released again (two services given one port failed npm start with EADDRINUSE)', async () => {
  const ports: number[] = []
  for (let i = 0; i < 2000; i++) ports.push(await freePort())
  assert.equal(new Set(ports).size, ports.length)
  assert.ok(ports.every((port) => port > 0 && port < 65536))
})
