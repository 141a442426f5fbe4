import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from 'node:net'
import WebSocket from 'ws'
import { Redis } from 'ioredis'
import { createTestSchema, uniqueName, SERVICE_HEADERS, type TestSchema } from '../../test/helpers/database.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../../test/helpers/services.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { startFaultProxy } from '../../test/helpers/fault-proxy.js'
import { collectRejections, cutOnSubscribe } from '../../test/helpers/subscribe-cut.js'
import { eventually } from '../../test/helpers/eventually.js'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { EventHub } from './events.js'
import { EVENTS_SCOPE } from './routes/events.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A WebSocket client on the events route, collecting what it receives after the greeting. */
async function listen (url: string, headers: Record<string, string> = SERVICE_HEADERS): Promise<{ ws: WebSocket, events: Array<Record<string, unknown>>, next: () => Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers })
  const events: Array<Record<string, unknown>> = []
  const waiting: Array<(e: Record<string, unknown>) => void> = []
  ws.on('message', (data: Buffer) => {
    const event = JSON.parse(data.toString()) as Record<string, unknown>
    if (event.type === 'hello') return
    const waiter = waiting.shift()
    if (waiter) waiter(event)
    else events.push(event)
  })
  const [greeting] = await once(ws, 'message') as [Buffer]
  assert.equal(JSON.parse(greeting.toString()).type, 'hello')
  return { ws, events, next: () => new Promise((resolve) => { const e = events.shift(); if (e) resolve(e); else waiting.push(resolve) }) }
}

async function setup (t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string>): Promise<{ db: TestSchema, dataUrl: string }> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const data = await startDataService(t, db, env)
  await insertAgents(db, [{ name: 'Ws', capacity: 10 }])
  return { db, dataUrl: data.url }
}

test('a client connected to any orchestrator instance sees the routing events of every instance (Redis)', async (t) => {
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('ev')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const b = await startOrchestrator(t, db, dataUrl, env)
  const client = await listen(a.url)
  t.after(async () => { client.ws.close() })
  const [lead] = await insertLeads(db, 1)
  const routed = await b.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })
  assert.equal(routed.statusCode, 200, routed.body)
  const event = await client.next()
  assert.equal(event.type, 'lead.assigned')
  assert.equal(event.leadId, lead)
  assert.equal(event.agentId, routed.json().agentId)
  assert.match(String(event.eventId), /^[0-9a-f-]{36}$/, 'each event carries a unique id')
  // Its own instance's events come once, through the same channel.
  const [second] = await insertLeads(db, 1)
  await a.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${second}/route`, headers: SERVICE_HEADERS })
  assert.equal((await client.next()).leadId, second)
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(client.events.length, 0, 'no duplicate')
})

test('EVENTS_CHANNEL separates fleets sharing one Redis: an instance on another channel does not see the events, one on the same channel does', async (t) => {
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('ev')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const other = await startOrchestrator(t, db, dataUrl, { ...env, EVENTS_CHANNEL: uniqueName('events') }, true)
  const same = await listen(a.url)
  const apart = await listen(other.url)
  t.after(async () => { same.ws.close(); apart.ws.close() })
  const publisher = createRedisClient({ url: REDIS_URL, commandTimeoutMs: 1000 })
  t.after(() => publisher.disconnect())
  await once(publisher, 'ready')
  // What Redis holds: a subscriber on each channel, the service's channel and no other.
  assert.deepEqual(await publisher.call('PUBSUB', 'NUMSUB', env.EVENTS_CHANNEL), [env.EVENTS_CHANNEL, 1])
  const [lead] = await insertLeads(db, 1)
  assert.equal((await a.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${lead}/route`, headers: SERVICE_HEADERS })).statusCode, 200)
  assert.equal((await same.next()).leadId, lead)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.deepEqual(apart.events, [], 'the other fleet heard nothing')
})

test('without Redis the events stay in the instance; an unauthenticated WebSocket is refused', async (t) => {
  const env = { CACHE_PREFIX: `${uniqueName('ev')}:` }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const client = await listen(a.url)
  t.after(async () => { client.ws.close() })
  const [lead] = await insertLeads(db, 1)
  await a.app.inject({ method: 'POST', url: '/orchestrator/v1/route-batch', headers: SERVICE_HEADERS, payload: { limit: 5 } })
  assert.equal((await client.next()).leadId, lead)
  const refused = new WebSocket(`${a.url.replace('http', 'ws')}/orchestrator/v1/events`)
  refused.on('error', () => {})
  const [, response] = await once(refused, 'unexpected-response') as [unknown, { statusCode: number }]
  assert.equal(response.statusCode, 401)
  refused.terminate()
})

/** The raw answer to one upgrade request written on its own connection (ws and fetch would refuse to send it). */
async function rawUpgrade (url: string, headers: Record<string, string>): Promise<{ status: number, headers: Record<string, string>, body: string }> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  let text = 'GET /orchestrator/v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\n'
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`
  socket.write(`${text}\r\n`)
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('utf8') })
  await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, 3000))])
  socket.destroy()
  const [head = '', body = ''] = received.split('\r\n\r\n')
  const [statusLine = '', ...lines] = head.split('\r\n')
  const parsed = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0), headers: parsed, body }
}

test('a WebSocket handshake refused 400 WEBSOCKET_HANDSHAKE_INVALID carries the rate-limit headers, request id and security headers of every other answer, and is counted', async (t) => {
  const env = { REDIS_URL, RATE_LIMIT_ENABLED: 'true', CACHE_PREFIX: `${uniqueName('ev')}:`, RATE_LIMIT_PREFIX: `${uniqueName('ev-rl')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const { dataUrl, db } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const { key } = await a.app.apiKeys.mint('ws handshake', ['routing'])
  const upgrade = { 'x-api-key': key, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
  const remaining: number[] = []
  for (const wrong of [{ 'sec-websocket-key': 'not a key' }, { 'sec-websocket-version': '99' }]) {
    const answer = await rawUpgrade(a.url, { ...upgrade, ...wrong })
    assert.equal(answer.status, 400, JSON.stringify(answer))
    assert.equal(JSON.parse(answer.body).code, 'WEBSOCKET_HANDSHAKE_INVALID')
    for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit-policy', 'ratelimit', 'x-request-id', 'x-content-type-options', 'content-security-policy']) {
      assert.ok(answer.headers[name], `${name} missing: ${JSON.stringify(answer.headers)}`)
    }
    assert.equal(answer.headers['cache-control'], 'no-store')
    assert.equal(answer.headers.connection, 'close')
    remaining.push(Number(answer.headers['x-ratelimit-remaining']))
  }
  // Each refused handshake spent one request of the key's quota.
  assert.equal(remaining[1], (remaining[0] ?? 0) - 1, remaining.join(', '))
})

test('a connection cut while the event subscriber\'s SUBSCRIBE is in flight raises no unhandled rejection, and the hub subscribes again and hears other instances\' events once Redis is back', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const rejected = collectRejections(t)
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const cut = cutOnSubscribe(client, proxy)
  const channel = uniqueName('events')
  const hub = new EventHub(client, channel, { warn: () => {} } as never, { timeoutMs: 200, breakerThreshold: 5, breakerCooldownMs: 1000 })
  t.after(() => hub.close())
  const heard: string[] = []
  hub.listen((message) => heard.push(message))
  await hub.ready(5000)
  const publisher = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
  t.after(() => publisher.disconnect())
  await eventually(async () => {
    await publisher.publish(channel, 'before').catch(() => 0)
    return heard.includes('before')
  }, 'the hub hears the channel', 5000)

  // Subscribed once, so a reconnect re-subscribes; the first SUBSCRIBE after the drop is cut in flight.
  cut.arm(1)
  proxy.reset()
  setTimeout(() => proxy.heal(), 100)
  await eventually(() => cut.left() === 0, 'the SUBSCRIBE was cut', 5000)
  await eventually(async () => {
    await publisher.publish(channel, 'after').catch(() => 0)
    return heard.includes('after')
  }, 'the hub hears the channel again', 5000)
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.deepEqual(rejected, [])
})

test('an event hub started while Redis is unreachable subscribes once Redis is back', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  proxy.reset()
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const channel = uniqueName('events')
  const hub = new EventHub(client, channel, { warn: () => {} } as never, { timeoutMs: 200, breakerThreshold: 5, breakerCooldownMs: 1000 })
  t.after(() => hub.close())
  const heard: string[] = []
  hub.listen((message) => heard.push(message))
  await hub.ready(300)
  // A few reconnect attempts fail before the link is back.
  await new Promise((resolve) => setTimeout(resolve, 500))
  proxy.heal()
  const publisher = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
  t.after(() => publisher.disconnect())
  await eventually(async () => {
    await publisher.publish(channel, 'hello').catch(() => 0)
    return heard.includes('hello')
  }, 'the hub hears the channel', 5000)
})

test('the hub remembers at most 10,000 events delivered here while their publish is still queued: the oldest one\'s late copy is delivered again, the newest one\'s is dropped', async (t) => {
  // A publisher whose PUBLISH is never answered, as on a hung Redis, and a subscriber the test speaks for.
  const subscriber = Object.assign(new EventEmitter(), { subscribe: async () => 1, ping: async () => 'PONG', status: 'ready', quit: async () => 'OK', disconnect: () => {} })
  const redis = { duplicate: () => subscriber, publish: async () => new Promise(() => {}), ping: async () => 'PONG' }
  const hub = new EventHub(redis as never, 'events', { warn: () => {} } as never, { timeoutMs: 20, breakerThreshold: 1_000_000, breakerCooldownMs: 1000 })
  t.after(() => hub.close())
  // Subscribed: each copy is expected through the channel, so a timed-out publish is what holds it here.
  subscriber.emit('ready')
  await hub.ready(1000)
  assert.equal(hub.subscribed, true)
  const heard: string[] = []
  hub.listen((message) => heard.push(message))
  const event = { type: 'lead.assigned' as const, leadId: 'l', agentId: 'a', agentName: 'n', score: 1, assignedAt: new Date(0).toISOString() }
  const published = await Promise.all(Array.from({ length: 10_001 }, async () => hub.publish(event)))
  assert.ok(published.every((p) => !p), 'every publish timed out')
  assert.equal(heard.length, 10_001, 'each delivered here at once')
  assert.equal(new Set(heard.map((m) => JSON.parse(m).eventId)).size, 10_001, 'each with an id of its own')
  const [oldest, newest] = [heard[0] as string, heard[10_000] as string]
  subscriber.emit('message', 'events', newest)
  subscriber.emit('message', 'events', oldest)
  assert.deepEqual(heard.slice(10_001), [oldest])
})

test('a Redis outage under a stream of routed leads logs one warning per interval, not one per event, counts each event that reached this instance only, and says when publishing recovered', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const lines: Array<{ level: string, fields: Record<string, unknown> }> = []
  const log = { warn: (fields: Record<string, unknown>) => lines.push({ level: 'warn', fields }), info: (fields: Record<string, unknown>) => lines.push({ level: 'info', fields }) }
  const hub = new EventHub(client, uniqueName('events'), log as never, { timeoutMs: 200, breakerThreshold: 5, breakerCooldownMs: 200, failureLogIntervalMs: 500 })
  t.after(() => hub.close())
  await hub.ready(5000)
  const event = { type: 'lead.assigned' as const, leadId: 'l', agentId: 'a', agentName: 'n', score: 1, assignedAt: new Date(0).toISOString() }
  assert.equal(await hub.publish(event), true)
  // The publish failures' lines: the subscriber's connection logs its own link errors (one per reconnect attempt).
  const warnings = (): Array<Record<string, unknown>> => lines.filter((l) => l.level === 'warn' && 'leadId' in l.fields).map((l) => l.fields)

  proxy.reset()
  let failed = 0
  const started = performance.now()
  while (performance.now() - started < 1200) {
    if (!(await hub.publish(event))) failed++
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.ok(failed >= 20, `${failed} publishes failed`)
  // 1.2 s of failures at one line per 500 ms: the first at once, then about two more, each counting those it left out.
  assert.ok(warnings().length >= 2 && warnings().length <= 4, `${warnings().length} warnings for ${failed} failed publishes`)
  assert.equal(warnings()[0]?.unlogged, undefined, 'the first failure is logged at once')
  assert.ok(warnings().slice(1).every((w) => typeof w.unlogged === 'number' && w.unlogged > 0), JSON.stringify(warnings()))
  assert.ok(warnings().every((w) => w.leadId === 'l' && w.err !== undefined))
  assert.equal(hub.counts.localOnly, failed)

  proxy.heal()
  await eventually(async () => await hub.publish(event), 'publishing recovers', 5000)
  // At most one line per interval: the recovery line is written by the end of the one the last warning opened.
  const recovered = (): Array<Record<string, unknown>> => lines.filter((l) => l.level === 'info').map((l) => l.fields)
  await eventually(() => recovered().length > 0, 'the recovery line', 1000)
  assert.deepEqual(recovered(), [{ failed: hub.counts.localOnly, late: 0 }], 'one line, with the outage\'s total')
  assert.equal(hub.counts.published, 2)

  // A new outage after a quiet interval is logged at once.
  await new Promise((resolve) => setTimeout(resolve, 500))
  const before = warnings().length
  proxy.reset()
  assert.equal(await hub.publish(event), false)
  assert.equal(warnings().length, before + 1)
})

test('an event that reached this instance\'s clients only (Redis cut) is counted in /metrics as orchestrator_events_total{reach="instance"}', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  const env = { REDIS_URL: proxy.rewrite(redis.url), CACHE_PREFIX: `${uniqueName('ev')}:`, EVENTS_CHANNEL: uniqueName('events') }
  const { db, dataUrl } = await setup(t, env)
  const orchestrator = await startOrchestrator(t, db, dataUrl, env)
  const [first, second] = await insertLeads(db, 2)
  const count = async (reach: string): Promise<number> => {
    const body = (await orchestrator.app.inject('/metrics')).body
    const line = body.split('\n').find((l) => l.startsWith('orchestrator_events_total{') && l.includes(`reach="${reach}"`))
    return Number(line?.split(' ').at(-1))
  }
  assert.equal((await orchestrator.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${first}/route`, headers: SERVICE_HEADERS })).statusCode, 200)
  assert.deepEqual([await count('all'), await count('instance')], [1, 0])
  proxy.reset()
  assert.equal((await orchestrator.app.inject({ method: 'POST', url: `/orchestrator/v1/leads/${second}/route`, headers: SERVICE_HEADERS })).statusCode, 200)
  assert.deepEqual([await count('all'), await count('instance')], [1, 1])
})

test('an event whose channel copy is heard before its PUBLISH\'s reply, the budget then running out, is delivered once and counted as published, not delivered a second time as unpublished', async () => {
  // Redis sends the subscriber's copy and the publisher's reply at once; here the copy arrives and the reply never does.
  const subscriber = Object.assign(new EventEmitter(), { subscribe: async () => 1, ping: async () => 'PONG', status: 'ready' })
  const redis = {
    duplicate: () => subscriber,
    publish: async (channel: string, message: string) => {
      subscriber.emit('message', channel, message)
      return new Promise(() => {})
    }
  }
  const warnings: unknown[] = []
  const hub = new EventHub(redis as never, 'events', { warn: (fields: unknown) => warnings.push(fields), info: () => {} } as never, { timeoutMs: 20, breakerThreshold: 1_000_000, breakerCooldownMs: 1000 })
  subscriber.emit('ready')
  await hub.ready(1000)
  assert.equal(hub.subscribed, true)
  const heard: string[] = []
  hub.listen((message) => heard.push(message))
  const event = { type: 'lead.assigned' as const, leadId: 'l', agentId: 'a', agentName: 'n', score: 1, assignedAt: new Date(0).toISOString() }
  assert.equal(await hub.publish(event), true, 'it reached the channel')
  assert.equal(heard.length, 1, 'delivered once')
  assert.deepEqual(hub.counts, { published: 1, localOnly: 0 })
  assert.deepEqual(warnings, [])
})

/** A hub on a private Redis whose PUBLISH the test allows or refuses (ACL: NOPERM, a reply at once), with its log lines. */
async function hubWithRefusablePublish (t: { after: (fn: () => Promise<void> | void) => void }, failureLogIntervalMs: number): Promise<{
  hub: EventHub, refuse: (refused: boolean) => Promise<void>, warnings: () => Array<Record<string, unknown>>, recovered: () => Array<Record<string, unknown>>
}> {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const admin = createRedisClient({ url: redis.url, commandTimeoutMs: 1000 })
  admin.on('error', () => {})
  t.after(() => admin.disconnect())
  await once(admin, 'ready')
  await admin.call('ACL', 'SETUSER', 'publisher', 'on', 'nopass', '~*', '&*', '+@all')
  const client = createRedisClient({ url: redis.url.replace('redis://', 'redis://publisher:x@'), commandTimeoutMs: 1000 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  await once(client, 'ready')
  const lines: Array<{ level: string, fields: Record<string, unknown> }> = []
  const log = { warn: (fields: Record<string, unknown>) => lines.push({ level: 'warn', fields }), info: (fields: Record<string, unknown>) => lines.push({ level: 'info', fields }) }
  // A threshold no test reaches: the refusals are replies, and each must reach Redis.
  const hub = new EventHub(client, uniqueName('events'), log as never, { timeoutMs: 1000, breakerThreshold: 1_000_000, breakerCooldownMs: 100, failureLogIntervalMs })
  t.after(() => hub.close())
  await hub.ready(5000)
  return {
    hub,
    refuse: async (refused) => { await admin.call('ACL', 'SETUSER', 'publisher', refused ? '-publish' : '+publish') },
    warnings: () => lines.filter((l) => l.level === 'warn' && 'leadId' in l.fields).map((l) => l.fields),
    recovered: () => lines.filter((l) => l.level === 'info').map((l) => l.fields)
  }
}

const anEvent = { type: 'lead.assigned' as const, leadId: 'l', agentId: 'a', agentName: 'n', score: 1, assignedAt: new Date(0).toISOString() }

test('failed publishes left out of a warning are logged when the interval ends though nothing is published after them, and when the hub closes', async (t) => {
  const { hub, refuse, warnings } = await hubWithRefusablePublish(t, 500)
  await refuse(true)
  for (let i = 0; i < 10; i++) assert.equal(await hub.publish(anEvent), false)
  assert.equal(warnings().length, 1, 'the first failure at once')
  // No publish follows: the nine left out are still reported, once the interval is over.
  await eventually(() => warnings().length === 2, 'the failures left out are logged without a further publish', 2000)
  assert.equal(warnings()[1]?.unlogged, 9)
  for (let i = 0; i < 3; i++) assert.equal(await hub.publish(anEvent), false)
  assert.equal(warnings().length, 2)
  await hub.close()
  assert.equal(warnings().length, 3, 'closing writes what the interval held back')
  assert.equal(warnings()[2]?.unlogged, 3)
})

test('a Redis failing and succeeding in turn logs one line per interval, not a warning and a recovery line per event', async (t) => {
  const { hub, refuse, warnings, recovered } = await hubWithRefusablePublish(t, 1000)
  const started = performance.now()
  for (let i = 0; i < 20; i++) {
    await refuse(true)
    assert.equal(await hub.publish(anEvent), false)
    await refuse(false)
    assert.equal(await hub.publish(anEvent), true)
  }
  assert.ok(performance.now() - started < 1000, 'the flapping fits in one interval')
  assert.equal(warnings().length, 1, JSON.stringify(warnings()))
  assert.ok(recovered().length <= 1, JSON.stringify(recovered()))
  await eventually(() => recovered().length === 1, 'the recovery line, once the interval is over', 3000)
  assert.deepEqual(recovered(), [{ failed: 20, late: 0 }])
  assert.equal(warnings().length, 1)
})

test('the recovery line after Redis hung counts the timed-out events Redis ran late (late), which reached every instance', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  // A test that fails while Redis is paused must not leave it stopped for the others' cleanup.
  t.after(() => redis.resume())
  const client = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  await once(client, 'ready')
  const lines: Array<{ level: string, fields: Record<string, unknown> }> = []
  const log = { warn: (fields: Record<string, unknown>) => lines.push({ level: 'warn', fields }), info: (fields: Record<string, unknown>) => lines.push({ level: 'info', fields }) }
  const channel = uniqueName('events')
  const hub = new EventHub(client, channel, log as never, { timeoutMs: 200, breakerThreshold: 5, breakerCooldownMs: 200, failureLogIntervalMs: 1000 })
  t.after(() => hub.close())
  await hub.ready(5000)
  // Another instance's subscriber.
  const other = new Redis(redis.url)
  other.on('error', () => {})
  t.after(() => other.disconnect())
  let otherHeard = 0
  other.on('message', () => otherHeard++)
  await other.subscribe(channel)
  redis.pause()
  assert.deepEqual(await Promise.all([hub.publish(anEvent), hub.publish(anEvent), hub.publish(anEvent)]), [false, false, false])
  redis.resume()
  await eventually(async () => await hub.publish(anEvent), 'publishing recovers', 5000)
  await eventually(() => otherHeard === 4, 'the other instance got the three late and the fourth', 5000)
  const recovered = (): Array<Record<string, unknown>> => lines.filter((l) => l.level === 'info').map((l) => l.fields)
  await eventually(() => recovered().length === 1, 'the recovery line', 3000)
  assert.deepEqual(recovered(), [{ failed: 3, late: 3 }])
})

/** The status and JSON body of an events upgrade the service refuses, or 101 and the open socket. */
async function upgrade (url: string, headers: Record<string, string>): Promise<{ status: number, body?: Record<string, unknown>, retryAfter?: string, ws: WebSocket }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/orchestrator/v1/events`, { headers })
  ws.on('error', () => {})
  return await new Promise((resolve) => {
    ws.once('open', () => resolve({ status: 101, ws }))
    ws.once('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += chunk.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}), ws }))
    })
  })
}

test('an instance holds at most EVENTS_MAX_SOCKETS_PER_KEY event sockets of one key (429 TOO_MANY_SOCKETS) and EVENTS_MAX_SOCKETS in all (503 EVENTS_AT_CAPACITY), concurrent upgrades included; a closed socket frees its place', async (t) => {
  // Before, nothing bounded them: each socket of a client that never reads holds up to EVENTS_MAX_BUFFERED_BYTES.
  const env = { CACHE_PREFIX: `${uniqueName('ev')}:`, EVENTS_MAX_SOCKETS: '4', EVENTS_MAX_SOCKETS_PER_KEY: '2' }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const { key } = await a.app.apiKeys.mint('feed', ['routing'])
  const { key: other } = await a.app.apiKeys.mint('other feed', ['routing'])
  const opened: WebSocket[] = []
  t.after(async () => { for (const ws of opened) ws.terminate() })
  const open = async (headers: Record<string, string>): Promise<Awaited<ReturnType<typeof upgrade>>> => {
    const r = await upgrade(a.url, headers)
    opened.push(r.ws)
    return r
  }
  assert.equal((await open({ 'x-api-key': key })).status, 101)
  const second = await open({ 'x-api-key': key })
  assert.equal(second.status, 101)
  const third = await open({ 'x-api-key': key })
  assert.equal(third.status, 429)
  assert.equal(third.body?.code, 'TOO_MANY_SOCKETS')
  // Another key, and the platform's own services, are not held to the first key's share.
  assert.equal((await open({ 'x-api-key': other })).status, 101)
  assert.equal((await open(SERVICE_HEADERS)).status, 101)
  const full = await open({ 'x-api-key': other })
  assert.equal(full.status, 503)
  assert.equal(full.body?.code, 'EVENTS_AT_CAPACITY')
  assert.ok(Number(full.retryAfter) >= 1, 'a 503 says when to come back')
  // A socket closed frees its place, for its key and for the instance.
  second.ws.close()
  await once(second.ws, 'close')
  await eventually(async () => (await open({ 'x-api-key': key })).status === 101, 'the key opened a socket again')

  // Upgrades in flight together pass the first check together: past the cap, the ones that came last are closed at once.
  const b = await startOrchestrator(t, db, dataUrl, env, true)
  const burst = await Promise.all(Array.from({ length: 12 }, async () => {
    const ws = new WebSocket(`${b.url.replace('http', 'ws')}/orchestrator/v1/events`, { headers: SERVICE_HEADERS })
    opened.push(ws)
    ws.on('error', () => {})
    const closed = once(ws, 'close').then(() => true)
    await Promise.race([once(ws, 'open'), once(ws, 'unexpected-response'), closed])
    return { ws, closed }
  }))
  await sleep(500)
  const stillOpen = burst.filter((c) => c.ws.readyState === WebSocket.OPEN).length
  assert.ok(stillOpen >= 1 && stillOpen <= 4, `${stillOpen} of 12 sockets stayed open, with EVENTS_MAX_SOCKETS=4`)
})

test('a shutdown tells reading WebSocket clients 1001 and cuts one that never answers the close frame within its grace, instead of waiting 30 s for it', async (t) => {
  const env = { CACHE_PREFIX: `${uniqueName('ev')}:` }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const reading = await listen(a.url)
  const readingClosed = once(reading.ws, 'close').then(([code]) => code as number)
  const silent = await listen(a.url)
  t.after(() => { reading.ws.terminate(); silent.ws.terminate() })
  // A client that stopped reading never sees the close frame, so never answers it.
  silent.ws.pause()
  const started = performance.now()
  await a.app.close()
  const took = performance.now() - started
  assert.equal(await readingClosed, 1001)
  // Before, the default close gave no code (1005) and the close waited ws's 30 s for the silent client.
  assert.ok(took < 4000, `the close took ${Math.round(took)} ms`)
})

test('an upgrade still in its hooks when the shutdown closes the WebSocket server is answered 503 SERVICE_CLOSING in the platform\'s body, not with ws\'s plain text', async (t) => {
  const env = { CACHE_PREFIX: `${uniqueName('ev')}:` }
  const { db, dataUrl } = await setup(t, env)
  const a = await startOrchestrator(t, db, dataUrl, env, true)
  const { key } = await a.app.apiKeys.mint('ws shutdown', [EVENTS_SCOPE])
  // The key's lookup is held until the shutdown has closed the WebSocket server.
  const store = a.app.apiKeys
  const verify = store.verify.bind(store)
  let entered: () => void = () => {}
  const inLookup = new Promise<void>((resolve) => { entered = resolve })
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  store.verify = async (...args: Parameters<typeof verify>) => { entered(); await held; return verify(...args) }
  const answer = rawUpgrade(a.url, { 'x-api-key': key, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' })
  await inLookup
  const closed = a.app.close()
  await sleep(100)
  release()
  const refused = await answer
  await closed
  // Before, ws answered it: `HTTP/1.1 503 Service Unavailable` with a text body.
  assert.equal(refused.status, 503, JSON.stringify(refused))
  assert.match(refused.headers['content-type'] ?? '', /^application\/json/)
  const body = JSON.parse(refused.body) as Record<string, unknown>
  assert.equal(body.code, 'SERVICE_CLOSING')
  assert.ok(refused.headers['x-request-id'], 'the request id of every other answer')
})

test('a subscriber connection a partition leaves half-open is found by its PING and renewed; meanwhile this instance delivers its own events to its clients itself, and once subscribed again hears each event once', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const proxy = await startFaultProxy({ port: redis.port })
  t.after(() => proxy.close())
  // The hub's subscriber goes through the proxy, its PUBLISH straight to Redis: the partition takes the subscriber's
  // connection alone, as it may take one TCP connection and not another.
  const client = createRedisClient({ url: proxy.rewrite(redis.url), commandTimeoutMs: 200 })
  client.on('error', () => {})
  t.after(() => client.disconnect())
  const direct = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
  t.after(() => direct.disconnect())
  client.publish = direct.publish.bind(direct) as typeof client.publish
  client.ping = direct.ping.bind(direct) as typeof client.ping
  const channel = uniqueName('events')
  const warnings: string[] = []
  const hub = new EventHub(client, channel, { warn: (a: unknown, b?: unknown) => { warnings.push(String(typeof a === 'string' ? a : b)) }, info: () => {} } as never, { timeoutMs: 200, breakerThreshold: 5, breakerCooldownMs: 1000 })
  t.after(() => hub.close())
  const heard: string[] = []
  hub.listen((message) => heard.push((JSON.parse(message) as { leadId: string }).leadId))
  await hub.ready(5000)
  assert.equal(hub.subscribed, true)
  assert.equal(await hub.publish({ ...anEvent, leadId: 'before' }), true)
  await eventually(() => heard.includes('before'), 'heard through the channel')

  proxy.blackhole()
  const cutAt = performance.now()
  // Before, the subscriber looked subscribed for as long as TCP kept the socket (hours), and this instance's clients
  // got none of its events, nor anyone's.
  await eventually(() => !hub.subscribed, 'the half-open subscriber is found', 10000)
  t.diagnostic(`found ${Math.round(performance.now() - cutAt)} ms after the partition`)
  // Renewed once the publisher's connection has answered a PING of its own, a moment later.
  await eventually(() => warnings.some((w) => w.startsWith('event subscriber did not answer a PING')), `the subscriber is renewed: ${warnings.join('; ')}`, 5000)
  assert.equal(await hub.publish({ ...anEvent, leadId: 'during' }), true, 'the PUBLISH reached Redis: every other instance hears it')
  assert.equal(heard.filter((id) => id === 'during').length, 1, 'delivered here at once')

  proxy.heal()
  await eventually(() => hub.subscribed, 'subscribed again once healed', 15000)
  assert.equal(await hub.publish({ ...anEvent, leadId: 'after' }), true)
  await eventually(() => heard.includes('after'), 'heard through the channel again')
  await sleep(200)
  assert.deepEqual(['during', 'after'].map((id) => heard.filter((h) => h === id).length), [1, 1], 'each once')
})

test('a Redis hung longer than the subscriber\'s link check keeps every subscription: the events whose PUBLISH timed out during the hang reach the other instances when it resumes, and this one\'s clients once', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => { redis.resume(); return redis.destroy() })
  const channel = uniqueName('events')
  const hubs = [0, 1].map(() => {
    const client = createRedisClient({ url: redis.url, commandTimeoutMs: 200 })
    client.on('error', () => {})
    t.after(() => client.disconnect())
    const hub = new EventHub(client, channel, { warn: () => {}, info: () => {} } as never, { timeoutMs: 200, breakerThreshold: 1000, breakerCooldownMs: 1000 })
    t.after(() => hub.close())
    const heard: string[] = []
    hub.listen((message) => heard.push((JSON.parse(message) as { leadId: string }).leadId))
    return { hub, heard }
  })
  const [a, b] = hubs as [typeof hubs[0], typeof hubs[0]]
  for (const h of hubs) await h.hub.ready(5000)
  redis.pause()
  assert.equal(await a.hub.publish({ ...anEvent, leadId: 'during' }), false, 'timed out')
  assert.deepEqual(a.heard, ['during'], 'delivered here at once')
  // Past the link check's 2 s and its PING's 3 s: before, every subscriber was cut and renewed meanwhile, and subscribed
  // again only after Redis had run the queued PUBLISH, which then reached no other instance.
  await sleep(7000)
  redis.resume()
  await eventually(() => b.heard.includes('during'), 'the other instance heard it late', 5000)
  await eventually(() => a.hub.subscribed && b.hub.subscribed, 'both taken as subscribed again', 10000)
  await sleep(300)
  assert.deepEqual(a.heard, ['during'], 'this instance\'s clients got it once')
  assert.equal(await a.hub.publish({ ...anEvent, leadId: 'after' }), true)
  await eventually(() => b.heard.includes('after') && a.heard.includes('after'), 'both hear the channel')
})
