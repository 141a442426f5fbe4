import { createHash, timingSafeEqual } from 'node:crypto'
import Fastify from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import addFormats from 'ajv-formats'
import type { Ajv } from 'ajv'
import { addSchemaRules } from '@lead-chassis/plugins/chassis'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { ALL_LISTS_TAG, changeTagsOf, leadKey, listKey, listTagFor } from '../../services/domain/lead-cache.js'
import { LeadsRepository } from '../../services/domain/leads-repository.js'
import { leadIdParamsSchema, leadPageSchema, leadSchema, listLeadsQuerySchema, patchLeadBodySchema, type LeadListQuery, type LeadPatch } from '../../services/domain/lead-schemas.js'
import { ALTERNATIVE_CACHE, createBentoCache, sendThroughBento } from './bentocache.js'

// The same routes and answers as the api, from the best libraries a careful team would pick today:
// @fastify/rate-limit over Redis (the same per-key limit) on an ioredis client with auto-pipelining, and bentocache
// as a two-tier cache (in-memory L1, Redis L2, its Redis bus keeping L1 coherent across instances) holding each
// answer's body and ETag, lists tagged by their filters and a PATCH invalidating the lead and the lists its old and
// new values appear in, as the api does. API keys checked against PostgreSQL and remembered in memory.
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const redis = new Redis(REDIS_URL, { enableAutoPipelining: true })
const pool = createConnectionPool({ connectionString: process.env.DATABASE_URL as string, schema: process.env.DB_SCHEMA ?? 'public', min: 5, max: 20 })
const leads = new LeadsRepository(pool)
const prefix = `alt:${process.pid}:`
const { bento, close: closeBento } = createBentoCache({ redisUrl: REDIS_URL, prefix: `${prefix}cache`, ...ALTERNATIVE_CACHE })

const verified = new LRUCache<string, { id: string, scopes: string[] }>({ max: 10000, ttl: 30000 })
async function identity (key: string | string[] | undefined): Promise<{ id: string, scopes: string[] } | undefined> {
  if (typeof key !== 'string') return undefined
  const known = verified.get(key)
  if (known) return known
  const match = /^lck_([A-Za-z0-9]{12})_([A-Za-z0-9_-]+)$/.exec(key)
  if (!match) return undefined
  const { rows: [row] } = await pool.query<{ secret_hash: Buffer, scopes: string[] }>('SELECT secret_hash, scopes FROM api_keys WHERE id = $1 AND revoked_at IS NULL', [match[1]])
  const given = createHash('sha256').update(match[2] ?? '').digest()
  if (!row || row.secret_hash.length !== given.length || !timingSafeEqual(row.secret_hash, given)) return undefined
  const id = { id: match[1] ?? '', scopes: row.scopes }
  verified.set(key, id)
  return id
}

// The api's schemas carry the platform's keyword (wellFormed) and dates: validated as the api validates them.
const app = Fastify({ logger: false, ajv: { plugins: [addFormats.default as (ajv: Ajv) => Ajv, addSchemaRules] } })
await app.register(fastifyRateLimit, {
  max: Number(process.env.BENCH_KEY_LIMIT ?? 1000),
  timeWindow: 60000,
  redis,
  nameSpace: `${prefix}rl:`,
  keyGenerator: (request) => String(request.headers['x-api-key'] ?? request.ip)
})
app.addHook('onRequest', async (request, reply) => {
  if (request.url.startsWith('/health')) return
  const id = await identity(request.headers['x-api-key'])
  const needed = request.method === 'GET' ? 'leads:read' : 'leads:write'
  if (!id || !id.scopes.includes(needed)) return reply.code(401).send({ statusCode: 401, code: 'INVALID_API_KEY', error: 'Unauthorized', message: 'invalid key' })
})

// Without a logger, a 500's cause is written here, the first few of each message: what a row's errors were.
const seen = new Map<string, number>()
app.addHook('onError', async (_request, _reply, error) => {
  if ((error.statusCode ?? 500) < 500) return
  const n = (seen.get(error.message) ?? 0) + 1
  seen.set(error.message, n)
  if (n <= 3) process.stderr.write(`alternative: 500 (${n}): ${error.stack ?? error.message}\n`)
})

app.get('/health/ready', { config: { rateLimit: false } }, async () => ({ status: 'ok' }))
app.get<{ Querystring: LeadListQuery }>('/api/v1/leads', { schema: { querystring: listLeadsQuerySchema, response: { 200: leadPageSchema } } },
  async (request, reply) => sendThroughBento(bento, request, reply, { key: listKey(request.query), tags: [listTagFor(request.query), ALL_LISTS_TAG] }, () => leads.list(request.query)))
app.get<{ Params: { id: string } }>('/api/v1/leads/:id', { schema: { params: leadIdParamsSchema, response: { 200: leadSchema } } },
  async (request, reply) => sendThroughBento(bento, request, reply, { key: leadKey(request.params.id) }, async () => {
    const lead = await leads.get(request.params.id)
    if (!lead) throw Object.assign(new Error('not found'), { statusCode: 404 })
    return lead
  }))
app.patch<{ Params: { id: string }, Body: LeadPatch }>('/api/v1/leads/:id', { schema: { params: leadIdParamsSchema, body: patchLeadBodySchema, response: { 200: leadSchema } } },
  async (request) => {
    const changed = await leads.update(request.params.id, request.body, 'alternative')
    if (!changed) throw Object.assign(new Error('not found'), { statusCode: 404 })
    if (changed.before !== changed.after) {
      await Promise.all([bento.delete({ key: leadKey(request.params.id) }), bento.deleteByTag({ tags: changeTagsOf(changed.before, changed.after) })])
    }
    return changed.after
  })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(async () => { await closeBento(); await pool.close(); redis.disconnect(); process.exit(0) }) })
