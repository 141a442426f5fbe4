import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot } from '../../services/platform/paths.js'
import { createTestSchema } from '../helpers/database.js'

/**
 * A folder laid out as deploy/Dockerfile's final stage: package.json, node_modules, dist and the migrations, and no
 * TypeScript sources. (Its node_modules still holds the dev dependencies: without tsconfig.json nothing may build.)
 */
function imageLayout (): string {
  const dir = mkdtempSync(join(tmpdir(), 'image-layout-'))
  cpSync(join(projectRoot, 'package.json'), join(dir, 'package.json'))
  cpSync(join(projectRoot, 'dist'), join(dir, 'dist'), { recursive: true })
  cpSync(join(projectRoot, 'services', 'domain', 'migrations'), join(dir, 'services', 'domain', 'migrations'), { recursive: true })
  symlinkSync(join(projectRoot, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return dir
}

test('npm run keys inside the deployed image runs the CLI instead of deleting dist/ and failing on a build it cannot do', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const dir = imageLayout()
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const id = 'imageLayout1'
  await db.sql("INSERT INTO api_keys (id, name, secret_hash, scopes) VALUES ($1, 'leaked', 'x', '{leads:read}')", [id])
  const run = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync('npm', ['run', '--silent', 'keys', '--', ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema }
  })
  const listed = run('list')
  assert.equal(listed.status, 0, `${String(listed.stdout)}${String(listed.stderr)}`)
  assert.match(String(listed.stdout), new RegExp(`^${id}\\s+active\\s+\\[leads:read\\]\\s+leaked$`, 'm'))
  assert.ok(existsSync(join(dir, 'dist', 'scripts', 'keys.js')), 'dist/ is still there')
  const revoked = run('revoke', '--id', id)
  assert.equal(revoked.status, 0, `${String(revoked.stdout)}${String(revoked.stderr)}`)
  assert.match(String(revoked.stdout), new RegExp(`^revoked ${id}$`, 'm'))
})
