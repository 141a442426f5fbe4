import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { SCOPES } from '../services/domain/scopes.js'
import { projectRoot } from '../services/platform/paths.js'

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
