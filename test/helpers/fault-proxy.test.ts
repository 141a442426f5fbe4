import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createConnection, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFaultProxy, type FaultProxy } from './fault-proxy.js'

type After = { after: (fn: () => unknown) => void }

/** An echo server behind a fault proxy. */
async function echoBehindProxy (t: After): Promise<{ proxy: FaultProxy, serverSockets: Set<Socket> }> {
  const serverSockets = new Set<Socket>()
  const server = createServer((socket) => {
    serverSockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => serverSockets.delete(socket))
    socket.pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const proxy = await startFaultProxy({ port: typeof address === 'object' && address ? address.port : 0 })
  t.after(async () => {
    await proxy.close()
    for (const s of serverSockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return { proxy, serverSockets }
}

interface Client { socket: Socket, received: () => string, events: string[] }

async function connect (t: After, port: number): Promise<Client> {
  const socket = createConnection({ port, host: '127.0.0.1' })
  let data = ''
  const events: string[] = []
  socket.on('data', (chunk: Buffer) => { data += chunk.toString() })
  socket.on('end', () => events.push('end'))
  socket.on('error', (e: NodeJS.ErrnoException) => events.push(e.code ?? 'error'))
  socket.on('close', () => events.push('close'))
  await once(socket, 'connect')
  t.after(() => socket.destroy())
  return { socket, received: () => data, events }
}

async function until (check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(10)
  }
}

test('the fault proxy forwards both ways, and its latency delays each direction', async (t) => {
  const { proxy } = await echoBehindProxy(t)
  const client = await connect(t, proxy.port)
  client.socket.write('hello')
  await until(() => client.received() === 'hello')

  proxy.latency(150)
  const started = Date.now()
  client.socket.write('slow')
  await until(() => client.received() === 'helloslow')
  assert.ok(Date.now() - started >= 290, `round trip took ${Date.now() - started} ms with 150 ms each way`)
  proxy.latency(0)
})

test('a paused link delivers nothing until healed, then everything in order', async (t) => {
  const { proxy } = await echoBehindProxy(t)
  const client = await connect(t, proxy.port)
  proxy.pause()
  client.socket.write('a')
  client.socket.write('b')
  await sleep(200)
  assert.equal(client.received(), '')
  proxy.heal()
  await until(() => client.received() === 'ab')
})

test('a blackholed link forwards no byte, no FIN and no RST, and holds a close until it heals', async (t) => {
  const { proxy, serverSockets } = await echoBehindProxy(t)
  const client = await connect(t, proxy.port)
  const other = await connect(t, proxy.port)
  await until(() => serverSockets.size === 2)
  proxy.blackhole()
  client.socket.write('lost?')
  other.socket.destroy()
  // A connection opened during the blackhole is accepted and held like the others.
  const late = await connect(t, proxy.port)
  late.socket.write('late')
  await sleep(300)
  assert.equal(client.received(), '')
  assert.equal(late.received(), '')
  assert.deepEqual(client.events, [])
  assert.equal(serverSockets.size, 3, 'the server did not learn of the closed connection')
  proxy.heal()
  await until(() => client.received() === 'lost?' && late.received() === 'late')
  await until(() => serverSockets.size === 2)
})

test('a reset link kills every connection with an RST, refuses new ones, and works again after heal', async (t) => {
  const { proxy, serverSockets } = await echoBehindProxy(t)
  const client = await connect(t, proxy.port)
  await until(() => serverSockets.size === 1)
  proxy.reset()
  await until(() => client.events.includes('close'))
  assert.ok(client.events.includes('ECONNRESET'), `events: ${client.events.join(', ')}`)
  await until(() => serverSockets.size === 0)

  const refused = createConnection({ port: proxy.port, host: '127.0.0.1' })
  const [error] = await once(refused, 'error') as [NodeJS.ErrnoException]
  assert.equal(error.code, 'ECONNRESET')

  proxy.heal()
  const again = await connect(t, proxy.port)
  again.socket.write('back')
  await until(() => again.received() === 'back')
  assert.equal(proxy.connections(), 1)
})
