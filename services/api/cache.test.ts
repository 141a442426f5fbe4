import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'
import { seed } from '../domain/seed.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let a: FastifyInstance
let b: FastifyInstance

before(async () => {
  db = await createTestSchema()
  await seed({ databaseUrl: db.url, schema: db.schema, count: 300, agents: 2, seed: 7 })
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('api')}:` }
  a = await buildApp(testApiConfig(db, env))
  b = await buildApp(testApiConfig(db, env))
})

after(async () => {
  await a?.close()
  await b?.close()
  await db?.drop()
})

async function someLead (where = 'true'): Promise<{ id: string, product: string, status: string, state: string }> {
  const [row] = await db.sql<{ id: string, product: string, status: string, state: string }>(`SELECT id, product, status, state FROM leads WHERE ${where} ORDER BY id LIMIT 1`)
  assert.ok(row)
  return row
}

test('PATCH through A, then GET through B: B returns the new value every time, over 200 rounds', async () => {
  const lead = await someLead()
  for (let round = 0; round < 200; round++) {
    await authed(b).inject(`/api/v1/leads/${lead.id}`)
    const patched = await authed(a).inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { score: round % 101 } })
    assert.equal(patched.statusCode, 200)
    const read = await authed(b).inject(`/api/v1/leads/${lead.id}`)
    assert.equal(read.json().score, round % 101, `round ${round}: ${String(read.headers['x-cache'])}`)
  }
  assert.equal(a.cache.getStats().invalidations.ackTimeouts, 0)
})

test('an instance with CACHE_ENABLED=false still invalidates what it writes: a PATCH or POST through it is seen by an instance serving from the cache', async (t) => {
  const off = await buildApp(testApiConfig(db, { REDIS_URL, CACHE_PREFIX: a.cache.options.prefix, CACHE_ENABLED: 'false' }))
  t.after(() => off.close())
  const lead = await someLead()
  await authed(b).inject(`/api/v1/leads/${lead.id}`)
  assert.equal((await authed(b).inject(`/api/v1/leads/${lead.id}`)).headers['x-cache'], 'HIT-LOCAL', 'B serves the lead from its cache')
  const patched = await authed(off).inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { score: 77 } })
  assert.equal(patched.statusCode, 200)
  assert.equal((await authed(b).inject(`/api/v1/leads/${lead.id}`)).json().score, 77, 'the write through the instance that serves nothing from the cache reached B\'s copy')
  // A new lead appears in the lists B has cached.
  const list = `/api/v1/leads?state=${lead.state}&product=${lead.product}&sort=-createdAt&limit=5`
  const ids = async (): Promise<string[]> => (await authed(b).inject(list)).json<{ data: Array<{ id: string }> }>().data.map((l) => l.id)
  await ids()
  const created = await off.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Off', lastName: 'Line', email: `${uniqueName('off')}@example.com`, phone: '+14155550123', product: lead.product, state: lead.state } })
  assert.equal(created.statusCode, 201, created.body)
  assert.ok((await ids()).includes(created.json<{ id: string }>().id), 'the new lead is in B\'s cached list')
})

test('responses carry an ETag; a matching If-None-Match gets 304; x-cache tells the tier', async () => {
  const lead = await someLead()
  await a.cache.del(`http:leads:id:${lead.id}`)
  const first = await authed(a).inject(`/api/v1/leads/${lead.id}`)
  assert.equal(first.headers['x-cache'], 'MISS')
  assert.equal(first.headers['cache-control'], 'private, no-cache')
  const etag = String(first.headers.etag)
  assert.match(etag, /^"[\w-]+"$/)
  const again = await authed(a).inject(`/api/v1/leads/${lead.id}`)
  assert.equal(again.headers['x-cache'], 'HIT-LOCAL')
  assert.equal(again.body, first.body)
  const other = await authed(b).inject(`/api/v1/leads/${lead.id}`)
  assert.match(String(other.headers['x-cache']), /HIT-REDIS|HIT-LOCAL/)
  const notModified = await authed(a).inject({ url: `/api/v1/leads/${lead.id}`, headers: { 'if-none-match': etag } })
  assert.equal(notModified.statusCode, 304)
  assert.equal(notModified.body, '')
  const changed = await authed(a).inject({ url: `/api/v1/leads/${lead.id}`, headers: { 'if-none-match': '"something-else"' } })
  assert.equal(changed.statusCode, 200)
})

test('a PATCH invalidates the lead and the lists it can appear in, not unrelated lists', async () => {
  const lead = await someLead("product = 'auto' AND status = 'new'")
  const unrelated = '/api/v1/leads?product=life&limit=5'
  const related = '/api/v1/leads?product=auto&limit=5'
  const target = '/api/v1/leads?status=contacted&product=auto&limit=100'
  for (const url of [unrelated, related, target]) await authed(a).inject(url)
  assert.equal((await authed(a).inject(unrelated)).headers['x-cache'], 'HIT-LOCAL')
  const beforeTarget = (await authed(a).inject(target)).json().data.map((l: { id: string }) => l.id)
  assert.ok(!beforeTarget.includes(lead.id))

  assert.equal((await authed(a).inject({ method: 'PATCH', url: `/api/v1/leads/${lead.id}`, payload: { status: 'contacted' } })).statusCode, 200)
  assert.equal((await authed(a).inject(unrelated)).headers['x-cache'], 'HIT-LOCAL', 'a list the lead is not in stays cached')
  assert.equal((await authed(b).inject(unrelated)).statusCode, 200)
  assert.equal((await authed(a).inject(related)).headers['x-cache'], 'MISS')
  const afterTarget = await authed(b).inject(target)
  assert.ok(afterTarget.json().data.some((l: { id: string }) => l.id === lead.id), 'the lead appears in the list of its new status on the other instance')
})

test('a POST invalidates the lists the new lead appears in', async () => {
  const url = '/api/v1/leads?state=WY&product=commercial&limit=100'
  const before = (await authed(b).inject(url)).json().data.length
  assert.equal((await authed(b).inject(url)).headers['x-cache'], 'HIT-LOCAL')
  const created = await authed(a).inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Wy', lastName: 'Oming', email: `wy.${Date.now()}@example.com`, product: 'commercial', state: 'WY' } })
  assert.equal(created.statusCode, 201)
  const after = await authed(b).inject(url)
  assert.equal(after.json().data.length, before + 1)
})

test('a Redis outage (stop, hang, restart) under load: zero 5xx and bounded latency', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const env = { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '50', CACHE_BREAKER_COOLDOWN_MS: '300', CACHE_PREFIX: `${uniqueName('out')}:` }
  const app = await buildApp(testApiConfig(db, env))
  t.after(() => app.close())
  const ids = (await db.sql<{ id: string }>('SELECT id FROM leads ORDER BY id LIMIT 20')).map((r) => r.id)
  const statuses = new Map<number, number>()
  const latencies: number[] = []
  let running = true
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const url = i % 3 === 0 ? `/api/v1/leads?limit=10&minScore=${(i + w) % 50}` : `/api/v1/leads/${ids[(i * 7 + w) % ids.length]}`
      const started = performance.now()
      const res = i % 10 === 9
        ? await authed(app).inject({ method: 'PATCH', url: `/api/v1/leads/${ids[w % ids.length]}`, payload: { score: i % 100 } })
        : await authed(app).inject(url)
      latencies.push(performance.now() - started)
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      // Local hits complete without I/O; yield so the test's timers can run.
      await yieldToLoop()
    }
  }
  const workers = Array.from({ length: 4 }, (_, w) => worker(w))
  await sleep(400)
  await redis.stop()
  await sleep(800)
  await redis.start()
  await sleep(800)
  redis.pause()
  await sleep(800)
  redis.resume()
  await sleep(1000)
  running = false
  await Promise.all(workers)

  const fiveXX = [...statuses].filter(([code]) => code >= 500).reduce((n, [, c]) => n + c, 0)
  assert.equal(fiveXX, 0, `statuses: ${JSON.stringify([...statuses])}`)
  latencies.sort((x, y) => x - y)
  const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0
  t.diagnostic(`p99 ${p99.toFixed(1)} ms, ${latencies.length} requests, statuses ${JSON.stringify([...statuses])}`)
  assert.ok(p99 < 400, `p99 ${p99.toFixed(0)} ms over ${latencies.length} requests`)
  assert.ok(latencies.length > 200)
  const stats = app.cache.getStats()
  assert.ok(stats.redis.errors > 0, 'the outage was seen')
  assert.equal(stats.redis.breaker, 'closed', 'recovered by itself')
})
