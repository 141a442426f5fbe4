import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tracingChannel } from 'node:diagnostics_channel'
import { QUERY_CHANNEL_NAME } from '@lead-chassis/plugins/db-pool'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig } from '../../test/helpers/database.js'

const cursor = (parts: unknown[]): string => Buffer.from(JSON.stringify(parts)).toString('base64url')

async function setup (t: { after: (fn: () => Promise<void>) => void }) {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db))
  t.after(() => app.close())
  return { db, api: authed(app) }
}

test('a forged cursor (a score out of range or not a number, an impossible date, an id that is no uuid, an activity id past bigint) is refused 400 INVALID_CURSOR before any query, not DB_INVALID_INPUT', async (t) => {
  const { db, api } = await setup(t)
  const [lead] = await db.sql<{ id: string }>("INSERT INTO leads (first_name, last_name, email, product, state) VALUES ('Ann', 'Lee', 'ann@example.com', 'auto', 'CA') RETURNING id")
  const id = lead?.id as string
  const forged: Array<[string, unknown[]]> = [
    ['/api/v1/leads?sort=-score', ['-score', 'x', id]],
    ['/api/v1/leads?sort=-score', ['-score', 1e308, id]],
    ['/api/v1/leads?sort=-score', ['-score', 50.5, id]],
    ['/api/v1/leads?sort=-score', ['-score', -1, id]],
    ['/api/v1/leads?sort=score', ['score', 101, id]],
    ['/api/v1/leads?sort=-score', ['-score', '50', id]],
    ['/api/v1/leads?sort=-score', ['-score', 50, 'not-a-uuid']],
    ['/api/v1/leads?sort=-score', ['-score', 50, `${id}x`]],
    ['/api/v1/leads?sort=-createdAt', ['-createdAt', '2026-13-45', id]],
    ['/api/v1/leads?sort=-createdAt', ['-createdAt', '2026-02-30T00:00:00.000000Z', id]],
    ['/api/v1/leads?sort=-createdAt', ['-createdAt', '2026-01-01T24:00:00.000000Z', id]],
    ['/api/v1/leads?sort=createdAt', ['createdAt', 1767225600000, id]],
    ['/api/v1/leads?sort=createdAt', ['createdAt', 'now', id]],
    ['/api/v1/leads', ['-createdAt', '2026-01-02T03:04:05.123456Z', 'not-a-uuid']],
    [`/api/v1/leads/${id}/activities`, ['activities', 0, '9999999999999999999']],
    [`/api/v1/leads/${id}/activities`, ['activities', 0, '9223372036854775808']],
    [`/api/v1/leads/${id}/activities`, ['activities', 0, '-1']],
    [`/api/v1/leads/${id}/activities`, ['activities', 'x', '1']]
  ]
  const statements: string[] = []
  const seam = tracingChannel<unknown, { text: string }>(QUERY_CHANNEL_NAME)
  const handlers = { start: (m: { text: string }) => { statements.push(m.text) }, end: () => {}, asyncStart: () => {}, asyncEnd: () => {}, error: () => {} }
  // Warm whatever the key check reads, so that only the routes' own queries could appear.
  assert.equal((await api.inject('/api/v1/leads?limit=1')).statusCode, 200)
  seam.subscribe(handlers)
  try {
    for (const [path, parts] of forged) {
      const url = `${path}${path.includes('?') ? '&' : '?'}cursor=${cursor(parts)}`
      const res = await api.inject(url)
      assert.equal(res.statusCode, 400, `${JSON.stringify(parts)}: ${res.body}`)
      assert.deepEqual([res.json().code, res.json().message], ['INVALID_CURSOR', 'querystring/cursor is not a valid cursor'], JSON.stringify(parts))
    }
  } finally {
    seam.unsubscribe(handlers)
  }
  assert.deepEqual(statements.filter((s) => /lead/.test(s)), [])
})

test('every cursor the service issues is accepted back: scores 0 and 100, timestamps with microseconds, the largest activity id', async (t) => {
  const { db, api } = await setup(t)
  const rows = await db.sql<{ id: string }>(`INSERT INTO leads (first_name, last_name, email, product, state, score, created_at) VALUES
    ('A', 'A', 'a@example.com', 'auto', 'CA', 0, '2026-01-02 03:04:05.123456+00'),
    ('B', 'B', 'b@example.com', 'auto', 'CA', 100, '1999-12-31 23:59:59.999999+00'),
    ('C', 'C', 'c@example.com', 'auto', 'CA', 0, '2026-01-02 03:04:05.000001+00'),
    ('D', 'D', 'd@example.com', 'auto', 'CA', 100, '2026-01-02 03:04:05+00') RETURNING id`)
  for (const sort of ['-createdAt', 'createdAt', '-score', 'score']) {
    const seen: string[] = []
    let next: string | null = null
    do {
      const url: string = `/api/v1/leads?sort=${encodeURIComponent(sort)}&limit=1${next ? `&cursor=${next}` : ''}`
      const res = await api.inject(url)
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`)
      const body: { data: Array<{ id: string }>, nextCursor: string | null } = res.json()
      seen.push(...body.data.map((l) => l.id))
      next = body.nextCursor
    } while (next)
    assert.deepEqual([...seen].sort(), rows.map((r) => r.id).sort(), sort)
  }
  const leadId = rows[0]?.id as string
  await db.sql(`INSERT INTO lead_activities (id, lead_id, type, details) OVERRIDING SYSTEM VALUE VALUES
    (9223372036854775807, $1, 'note', '{}'), (9223372036854775806, $1, 'note', '{}')`, [leadId])
  const first = await api.inject(`/api/v1/leads/${leadId}/activities?limit=1`)
  assert.equal(first.statusCode, 200, first.body)
  assert.deepEqual(first.json().data.map((a: { id: string }) => a.id), ['9223372036854775807'])
  const second = await api.inject(`/api/v1/leads/${leadId}/activities?limit=1&cursor=${first.json().nextCursor}`)
  assert.equal(second.statusCode, 200, second.body)
  assert.deepEqual(second.json().data.map((a: { id: string }) => a.id), ['9223372036854775806'])
})
