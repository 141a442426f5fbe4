import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
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
  const client = createServiceClient({ name: 'stalling', baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, timeoutMs: 1000, retries: 0, breakerThreshold: 5, breakerCooldownMs: 60_000, connections: 32 })
  t.after(() => client.close())
  // A busy machine may take the first call past its budget: the point is what follows.
  await eventually(async () => (await client.request({ path: '/x' }).catch(() => undefined))?.status === 200, 'answered before the stall')
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

/** An upstream on a free port answering by `answer` (called with the request's ordinal), its calls counted. */
async function upstreamOf (t: { after: (fn: () => void) => void }, answer: (n: number, res: ServerResponse) => void): Promise<{ url: string, calls: () => number }> {
  let calls = 0
  const held: ServerResponse[] = []
  const server = createServer((_req, res) => { held.push(res); answer(++calls, res) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const res of held) res.destroy(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls }
}

test('a stalled upstream costs a call its budget, retries and backoff included, not one budget per attempt', async (t) => {
  const upstream = await upstreamOf(t, () => {})
  const client = createServiceClient({ name: 'stalled', baseUrl: upstream.url, timeoutMs: 300, retries: 2, breakerCooldownMs: 60_000 })
  t.after(() => client.close())
  const started = performance.now()
  await assert.rejects(client.request({ path: '/x' }), { code: 'UPSTREAM_UNAVAILABLE', message: /no answer within 300 ms/ })
  const ms = performance.now() - started
  // Before, each of the three attempts had 300 ms of its own: about 900 ms and three calls.
  assert.ok(ms < 300 + 250, `settled in ${ms} ms`)
  assert.equal(upstream.calls(), 1, 'no attempt starts once the budget is spent')
})

test('attemptTimeoutMs: a stalled attempt is retried on another connection within the call\'s budget', async (t) => {
  // The first request stalls; the next one is answered.
  const upstream = await upstreamOf(t, (n, res) => { if (n > 1) res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}') })
  const client = createServiceClient({ name: 'one-stalls', baseUrl: upstream.url, timeoutMs: 2000, attemptTimeoutMs: 200, retries: 1, retryBaseMs: 1 })
  t.after(() => client.close())
  const started = performance.now()
  const res = await client.request<{ ok: boolean }>({ path: '/x' })
  const ms = performance.now() - started
  assert.deepEqual(res.body, { ok: true })
  assert.equal(upstream.calls(), 2)
  assert.ok(ms >= 190 && ms < 2000, `answered in ${ms} ms, after the first attempt's 200`)
  assert.throws(() => createServiceClient({ name: 'x', baseUrl: upstream.url, timeoutMs: 100, attemptTimeoutMs: 200 }), /attemptTimeoutMs must not be more than timeoutMs/)
})

test('an upstream\'s 503 with Retry-After is not retried and its wait is passed on, at most 300 s; a closing instance\'s 503 is retried', async (t) => {
  let headers: Record<string, string> = { 'retry-after': '10' }
  const upstream = await upstreamOf(t, (_n, res) => { res.writeHead(503, { 'content-type': 'application/json', ...headers }).end('{"code":"FST_UNDER_PRESSURE"}') })
  const client = createServiceClient({ name: 'shedding', baseUrl: upstream.url, retries: 2, retryBaseMs: 1, breakerThreshold: 100 })
  t.after(() => client.close())
  await assert.rejects(client.request({ path: '/x' }), (e: { code: string, retryAfterSeconds: number, headers: Record<string, string> }) => {
    assert.equal(e.code, 'UPSTREAM_UNAVAILABLE')
    assert.equal(e.retryAfterSeconds, 10)
    return true
  })
  assert.equal(upstream.calls(), 1, 'load shedding is not answered with more load')
  headers = { 'retry-after': '86400' }
  await assert.rejects(client.request({ path: '/x' }), { retryAfterSeconds: 300 })
  assert.equal(upstream.calls(), 2)
  // As an HTTP date, 20 s ahead: the same.
  headers = { 'retry-after': new Date(Date.now() + 20_000).toUTCString() }
  await assert.rejects(client.request({ path: '/x' }), (e: { retryAfterSeconds: number }) => e.retryAfterSeconds >= 19 && e.retryAfterSeconds <= 21)
  assert.equal(upstream.calls(), 3)
  // A 503 without Retry-After, or one that closes its connection (an instance shutting down), is retried.
  headers = {}
  await assert.rejects(client.request({ path: '/x' }), { retryAfterSeconds: 1 })
  assert.equal(upstream.calls(), 3 + 3)
  headers = { 'retry-after': '1', connection: 'close' }
  await assert.rejects(client.request({ path: '/x' }), { code: 'UPSTREAM_UNAVAILABLE' })
  assert.equal(upstream.calls(), 6 + 3)
})

test('a failed connection is told to the caller by its code, without the upstream\'s address', async (t) => {
  const upstream = await upstreamOf(t, () => {})
  const port = new URL(upstream.url).port
  // A port nothing listens on: the upstream's own, once closed.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const client = createServiceClient({ name: 'gone', baseUrl: `http://127.0.0.1:${deadPort}`, retries: 0 })
  t.after(() => client.close())
  await assert.rejects(client.request({ path: '/x' }), (e: Error) => {
    assert.match(e.message, /^gone is unavailable: request failed \(ECONNREFUSED\)$/)
    assert.doesNotMatch(e.message, new RegExp(`127\\.0\\.0\\.1|${deadPort}|${port}`))
    return true
  })
})

test('a call budget under a millisecond still makes its one attempt', async (t) => {
  const upstream = await upstreamOf(t, (_n, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
  // Before, the first attempt's budget floored to 0 ms and no attempt was ever made ('no attempt made'), and undici
  // refused the pool's fractional timeouts (UND_ERR_INVALID_ARG) on every call.
  const tiny = createServiceClient({ name: 'tiny', baseUrl: upstream.url, timeoutMs: 0.5, retries: 2 })
  t.after(() => tiny.close())
  await assert.rejects(tiny.request({ path: '/x' }), (e: Error) => {
    assert.doesNotMatch(e.message, /no attempt made/)
    assert.match(e.message, /no answer within 0.5 ms/)
    return true
  })
})

test('an upstream answer past maxResponseBytes fails 502 without being read whole or retried, by its length or as it streams; the default takes 8 MiB', async (t) => {
  // 'declared': a Content-Length past the bound; 'streamed': chunked, no length, 64 KiB a write for as long as the
  // client reads (before, the client read it all into memory, whatever its size).
  let mode: 'declared' | 'streamed' | 'fits' = 'declared'
  let sent = 0
  const upstream = await upstreamOf(t, (_n, res) => {
    if (mode === 'fits') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: 'x'.repeat(4000) })); return }
    if (mode === 'declared') { res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(64 * 1024 * 1024) }); res.write('['); return }
    res.writeHead(200, { 'content-type': 'application/json' })
    const chunk = Buffer.alloc(64 * 1024, 'x')
    const more = (): void => {
      while (!res.destroyed && sent < 256 * 1024 * 1024) {
        sent += chunk.length
        if (!res.write(chunk)) break
      }
    }
    res.on('drain', more)
    more()
  })
  const client = createServiceClient({ name: 'flooding', baseUrl: upstream.url, maxResponseBytes: 4096 + 100, retries: 2, retryBaseMs: 1, breakerThreshold: 1 })
  t.after(() => client.close())
  for (const m of ['declared', 'streamed'] as const) {
    mode = m
    const calls = upstream.calls()
    await assert.rejects(client.request({ path: '/x' }), (e: { statusCode: number, code: string, message: string }) => {
      assert.equal(e.statusCode, 502, m)
      assert.equal(e.code, 'UPSTREAM_ERROR', m)
      assert.equal(e.message, 'flooding answered more than 4196 bytes')
      return true
    })
    assert.equal(upstream.calls(), calls + 1, `${m}: the same call would get the same answer, so it is not retried`)
    assert.equal(client.breakerState, 'closed', `${m}: the upstream answered, so the breaker (threshold 1) stays closed`)
  }
  assert.ok(sent > 0 && sent < 16 * 1024 * 1024, `the streamed answer was dropped early (${sent} bytes written)`)
  mode = 'fits'
  assert.equal((await client.request<{ data: string }>({ path: '/x' })).body.data.length, 4000)
  // The default bound: 8 MiB taken, 8 MiB and a byte not.
  const sized = await upstreamOf(t, (n, res) => { res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(8 * 1024 * 1024 + (n === 1 ? 0 : 1))) })
  const byDefault = createServiceClient({ name: 'sized', baseUrl: sized.url, retries: 0 })
  t.after(() => byDefault.close())
  assert.equal((await byDefault.request<string>({ path: '/x' })).body.length, 8 * 1024 * 1024)
  await assert.rejects(byDefault.request({ path: '/x' }), { code: 'UPSTREAM_ERROR', message: 'sized answered more than 8388608 bytes' })
  assert.throws(() => createServiceClient({ name: 'x', baseUrl: sized.url, maxResponseBytes: 0 }), /maxResponseBytes must be a positive integer/)
})

test('an answer without a body (HEAD, 204) may declare any length; a 503 with a long body keeps its Retry-After and counts against the breaker', async (t) => {
  // A raw server, so a 204 can declare a length (Node's own drops it). Before, the declared length of a HEAD or 204
  // answer failed the call 502, and the stream destroyed after its end emitted an error nothing heard: an uncaught
  // exception that ended the process.
  const raw = net.createServer((socket) => {
    socket.on('error', () => {})
    socket.on('data', (data) => {
      const head = data.toString('latin1')
      if (head.startsWith('HEAD')) socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 67108864\r\n\r\n')
      else if (head.includes('/no-content')) socket.write('HTTP/1.1 204 No Content\r\ncontent-length: 99999999\r\n\r\n')
      else socket.write(`HTTP/1.1 503 Service Unavailable\r\nretry-after: 30\r\ncontent-type: text/plain\r\ncontent-length: ${64 * 1024 * 1024}\r\n\r\n${'x'.repeat(1024)}`)
    })
  })
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve))
  t.after(() => { raw.close() })
  const uncaught: unknown[] = []
  const hear = (e: unknown): void => { uncaught.push(e) }
  process.on('uncaughtException', hear)
  t.after(() => { process.off('uncaughtException', hear) })
  const client = createServiceClient({ name: 'bodiless', baseUrl: `http://127.0.0.1:${(raw.address() as AddressInfo).port}`, maxResponseBytes: 1024, retries: 2, breakerThreshold: 1, breakerCooldownMs: 10_000 })
  t.after(() => client.close())
  assert.equal((await client.request({ method: 'HEAD', path: '/x' })).status, 200)
  assert.equal((await client.request({ path: '/no-content' })).status, 204)
  await sleep(50)
  assert.deepEqual(uncaught, [])
  // The 503's body is past the bound, but its status says what happened: 503 with the upstream's wait, not retried,
  // and a failure the breaker (threshold 1) counts.
  await assert.rejects(client.request({ path: '/shedding' }), { code: 'UPSTREAM_UNAVAILABLE', retryAfterSeconds: 30 })
  assert.equal(client.breakerState, 'open')
})
