import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'
import { projectRoot } from '../platform/paths.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let db: TestSchema
let a: FastifyInstance
let b: FastifyInstance

before(async () => {
  db = await createTestSchema()
  const env = { REDIS_URL, RATE_LIMIT_ENABLED: 'true', CACHE_PREFIX: `${uniqueName('keys')}:`, RATE_LIMIT_PREFIX: `${uniqueName('rl')}:` }
  a = await buildApp(testApiConfig(db, env))
  b = await buildApp(testApiConfig(db, env))
})

after(async () => {
  await a?.close()
  await b?.close()
  await db?.drop()
})

test('keys are stored only as hashes', async () => {
  const minted = await a.apiKeys.mint('hash-check', ['leads:read'])
  assert.match(minted.key, /^lck_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/)
  const rows = await db.sql<{ dump: string }>('SELECT row_to_json(k)::text AS dump FROM api_keys k WHERE id = $1', [minted.id])
  const secret = minted.key.split('_').slice(2).join('_')
  assert.doesNotMatch(rows[0]?.dump ?? '', new RegExp(secret.replace(/[-_]/g, '.')))
})

test('a valid key moves the caller to the apiKey preset, counted per key whatever the address', async () => {
  const { key } = await a.apiKeys.mint('partner', ['leads:read'])
  const withKey = await a.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '198.51.100.1' })
  assert.equal(withKey.statusCode, 200)
  assert.equal(withKey.headers['x-ratelimit-limit'], '1000')
  assert.equal(withKey.headers['x-ratelimit-remaining'], '999')
  const otherAddress = await b.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key }, remoteAddress: '198.51.100.2' })
  assert.equal(otherAddress.headers['x-ratelimit-remaining'], '998', 'same key, another address and instance: one quota')
  const anonymous = await a.inject({ url: '/api/v1/leads?limit=1', remoteAddress: '198.51.100.1' })
  assert.equal(anonymous.headers['x-ratelimit-limit'], '100')
})

test('an invalid or revoked key gets 401; a revocation reaches the other instance at once', async () => {
  const { id, key } = await a.apiKeys.mint('to-revoke', ['leads:read'])
  assert.equal((await b.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })).statusCode, 200)
  const bogus = await a.inject({ url: '/api/v1/leads', headers: { 'x-api-key': 'lck_AAAAAAAAAAAA_' + 'x'.repeat(43) } })
  assert.equal(bogus.statusCode, 401)
  assert.equal(bogus.json().code, 'INVALID_API_KEY')
  assert.equal((await a.inject({ url: '/api/v1/leads', headers: { 'x-api-key': 'not a key' } })).statusCode, 401)
  const wrongSecret = key.slice(0, -3) + (key.endsWith('AAA') ? 'BBB' : 'AAA')
  assert.equal((await a.inject({ url: '/api/v1/leads', headers: { 'x-api-key': wrongSecret } })).statusCode, 401)
  assert.equal(await a.apiKeys.revoke(id), true)
  const revoked = await b.inject({ url: '/api/v1/leads?limit=1', headers: { 'x-api-key': key } })
  assert.equal(revoked.statusCode, 401)
  assert.equal(await a.apiKeys.revoke(id), false)
})

test('admin routes need an admin key and use the strict preset', async () => {
  const plain = await a.apiKeys.mint('plain', ['leads:read'])
  const admin = await a.apiKeys.mint('ops', ['admin'])
  assert.equal((await a.inject('/api/v1/admin/cache')).statusCode, 401)
  const forbidden = await a.inject({ url: '/api/v1/admin/cache', headers: { 'x-api-key': plain.key } })
  assert.equal(forbidden.statusCode, 403)
  assert.match(forbidden.json().message, /scope "admin"/)
  const stats = await a.inject({ url: '/api/v1/admin/cache', headers: { 'x-api-key': admin.key } })
  assert.equal(stats.statusCode, 200)
  assert.equal(typeof stats.json().localCacheSize, 'number')
  assert.match(String(stats.headers['ratelimit-policy']), /"strict";q=10;w=60/)
  const rl = await a.inject({ url: '/api/v1/admin/rate-limit', headers: { 'x-api-key': admin.key } })
  assert.equal(rl.statusCode, 200)
  assert.ok(rl.json().policies.apiKey.allowed >= 1)
  const statuses = []
  for (let i = 0; i < 10; i++) statuses.push((await a.inject({ url: '/api/v1/admin/pool', headers: { 'x-api-key': admin.key } })).statusCode)
  assert.deepEqual(statuses.slice(-2), [429, 429])
  assert.equal(statuses.filter((s) => s === 200).length, 8, 'strict: 10 per minute, two already used')
})

test('the keys script mints (printing the key once), lists and revokes', async () => {
  const run = promisify(execFile)
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema }
  const script = join(projectRoot, 'dist', 'scripts', 'keys.js')
  const minted = await run(process.execPath, [script, 'mint', '--name', 'cli', '--scopes', 'admin,leads:read'], { env })
  const key = /^(lck_\S+)$/m.exec(minted.stdout)?.[1]
  assert.ok(key, minted.stdout)
  const id = key.split('_')[1] as string
  const identity = await a.apiKeys.verify(key)
  assert.deepEqual(identity?.scopes, ['admin', 'leads:read'])
  const listed = await run(process.execPath, [script, 'list'], { env })
  assert.match(listed.stdout, new RegExp(`${id}\\s+active`))
  assert.doesNotMatch(listed.stdout, /lck_/, 'the key is never shown again')
  await run(process.execPath, [script, 'revoke', '--id', id], { env })
  await assert.rejects(run(process.execPath, [script, 'revoke', '--id', id], { env }), { code: 1 })
  await assert.rejects(run(process.execPath, [script, 'frobnicate'], { env }), { code: 2 })
})
