import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { authed, createTestSchema, testApiConfig, uniqueName, SERVICE_HEADERS, type TestSchema } from '../../test/helpers/database.js'
import { insertAgents, insertLeads, startDataService, startOrchestrator } from '../../test/helpers/services.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Every spelling of an id that the params schema (Ajv's format uuid) accepts. */
function spellings (id: string): string[] {
  const upper = id.toUpperCase()
  return [id, upper, `urn:uuid:${id}`, `URN:UUID:${upper}`, `Urn:Uuid:${id.slice(0, 8).toUpperCase()}${id.slice(8)}`, encodeURIComponent(`urn:uuid:${upper}`)]
}

type After = { after: (fn: () => Promise<void>) => void }

/** Two api instances sharing Redis and a cache prefix, as in production. */
async function twoInstances (t: After): Promise<{ db: TestSchema, a: FastifyInstance, b: FastifyInstance, env: Record<string, string> }> {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const env = { REDIS_URL, CACHE_PREFIX: `${uniqueName('ids')}:` }
  const a = await buildApp(testApiConfig(db, env))
  t.after(() => a.close())
  const b = await buildApp(testApiConfig(db, env))
  t.after(() => b.close())
  return { db, a, b, env }
}

/** Reads the lead through every spelling on both instances (caching each read) and returns the scores seen. */
async function scoresSeen (instances: FastifyInstance[], id: string): Promise<number[]> {
  const scores: number[] = []
  for (const app of instances) {
    for (const spelling of spellings(id)) {
      const res = await authed(app).inject(`/api/v1/leads/${spelling}`)
      assert.equal(res.statusCode, 200, `${spelling}: ${res.body}`)
      assert.equal(res.json().id, id, 'the id answered is the canonical one')
      scores.push(res.json().score)
    }
  }
  return scores
}

test('a PATCH through the upper-case id refreshes the lower-case cache entry on both instances', async (t) => {
  const { db, a, b } = await twoInstances(t)
  const [id] = await insertLeads(db, 1) as [string]
  // Every spelling the schema accepts, as the one patched and, on both instances, as the ones cached before.
  for (const [round, spelling] of spellings(id).entries()) {
    await scoresSeen([a, b], id)
    const patched = await authed(round % 2 === 0 ? a : b).inject({ method: 'PATCH', url: `/api/v1/leads/${spelling}`, payload: { score: 40 + round } })
    assert.equal(patched.statusCode, 200, patched.body)
    assert.deepEqual(await scoresSeen([a, b], id), Array(12).fill(40 + round), `patched through ${spelling}`)
  }
  const activities = await authed(a).inject(`/api/v1/leads/${spellings(id)[3]}/activities`)
  assert.equal(activities.statusCode, 200, activities.body)
  assert.equal(activities.json().data.length, spellings(id).length)
})

test('a routing decision through another spelling refreshes the lead the api cached on both instances', async (t) => {
  const { db, a, b, env } = await twoInstances(t)
  const data = await startDataService(t, db, env)
  const { app: orchestrator } = await startOrchestrator(t, db, data.url, env)
  await insertAgents(db, [{ name: 'Spell', capacity: 5 }])
  const [id] = await insertLeads(db, 1) as [string]
  assert.deepEqual(await scoresSeen([a, b], id), Array(12).fill(0))
  const routed = await orchestrator.inject({ method: 'POST', url: `/orchestrator/v1/leads/URN:UUID:${id.toUpperCase()}/route`, headers: SERVICE_HEADERS })
  assert.equal(routed.statusCode, 200, routed.body)
  assert.ok(routed.json().score > 0)
  assert.deepEqual(await scoresSeen([a, b], id), Array(12).fill(routed.json().score))
})
