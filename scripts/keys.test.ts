import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { SCOPES } from '../services/domain/scopes.js'
import { projectRoot } from '../services/platform/paths.js'
import { createTestSchema } from '../test/helpers/database.js'
import { freePort } from '../test/helpers/ports.js'

const run = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [join(projectRoot, 'dist', 'scripts', 'keys.js'), ...args], {
  encoding: 'utf8',
  timeout: 30_000,
  // No database: these answers come before one is opened.
  env: { PATH: process.env.PATH ?? '', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' }
})

test('keys --help prints the usage with every scope and exits 0, instead of a TypeError stack trace', () => {
  const help = run('--help')
  assert.equal(help.status, 0, String(help.stderr))
  assert.match(String(help.stdout), /^usage: npm run keys -- mint/m)
  for (const scope of SCOPES) assert.ok(String(help.stdout).includes(scope), `the usage names ${scope}`)
  assert.equal(String(help.stderr), '')
})

test('keys with an unknown option says which and prints the usage, exit 2, instead of a TypeError stack trace', () => {
  const wrong = run('revoke', '--key', 'lck_x')
  assert.equal(wrong.status, 2)
  assert.match(String(wrong.stderr), /unknown option '--key'/i)
  assert.match(String(wrong.stderr), /^usage: /m)
  assert.doesNotMatch(String(wrong.stderr), /ERR_PARSE_ARGS|\n\s+at /)
})

test('keys revoke with REDIS_URL unreachable revokes and says so in one line, not with ioredis\'s "Unhandled error event" stacks', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const id = 'redisDownKey'
  await db.sql("INSERT INTO api_keys (id, name, secret_hash, scopes) VALUES ($1, 'leaked', 'x', '{leads:read}')", [id])
  const revoked = spawnSync(process.execPath, [join(projectRoot, 'dist', 'scripts', 'keys.js'), 'revoke', '--id', id], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema, REDIS_URL: `redis://127.0.0.1:${await freePort()}` }
  })
  assert.equal(revoked.status, 0, String(revoked.stderr))
  assert.match(String(revoked.stdout), new RegExp(`^revoked ${id}$`, 'm'))
  assert.doesNotMatch(String(revoked.stderr), /Unhandled error event|\n\s+at /)
  assert.match(String(revoked.stderr), /^\[keys\] Redis unavailable/m)
  assert.equal(String(revoked.stderr).trim().split('\n').length, 1, String(revoked.stderr))
})
