// The example consumer, built the way a project outside this repository builds it: from the packed package.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, delimiter, dirname, join } from 'node:path'
import pg from 'pg'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { projectRoot } from '../../services/platform/paths.js'
import { TEST_DATABASE_URL, uniqueName } from '../helpers/database.js'
import { eventually } from '../helpers/eventually.js'
import { freePort } from '../helpers/ports.js'

const EXAMPLE = join(projectRoot, 'examples', 'quickstart')
// npm and the scripts it runs use the Node this test runs on, whatever Node is first on PATH.
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` }

function run (command: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): string {
  const started = performance.now()
  const r = spawnSync(command, args, { cwd, env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 180_000 })
  assert.equal(r.status, 0, `${command} ${args.join(' ')}: ${r.error?.message ?? ''}\n${r.stdout}\n${r.stderr}`)
  console.log(`# ${basename(command)} ${args[0]}: ${Math.round(performance.now() - started)} ms`)
  return r.stdout
}

interface PackResult { filename: string, files: Array<{ path: string }> }

test('the quickstart example installs the packed package, compiles against its declarations and serves through its plugins', { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'quickstart-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(EXAMPLE, dir, { recursive: true, filter: (src) => !/[/\\](node_modules|dist)$|\.tgz$/.test(src) })

  // `npm test` has just built plugins/dist; the prepack script's rebuild would replace it under other running tests.
  const [pack] = JSON.parse(run('npm', ['pack', '--workspace', 'plugins', '--pack-destination', dir, '--ignore-scripts', '--json'], projectRoot)) as PackResult[]
  assert.ok(pack)
  const files = new Set(pack.files.map((f) => f.path))
  const manifest = JSON.parse(readFileSync(join(projectRoot, 'plugins', 'package.json'), 'utf8')) as { exports: Record<string, { types: string } | string> }
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (typeof target === 'string') continue
    assert.ok(files.has(target.types.replace(/^\.\//, '')), `the tarball has the declarations of ${subpath}`)
  }
  assert.deepEqual([...files].filter((f) => /\.test\.|tsconfig/.test(f)), [], 'no tests and no build configuration in the tarball')
  assert.ok(files.has('README.md') && files.has('CHANGELOG.md') && files.has('package.json'))
  const examplePkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  assert.equal(examplePkg.dependencies['@lead-chassis/plugins'], `file:${pack.filename}`, 'the example depends on the tarball npm pack writes')

  // The root's install has filled npm's cache. The example's own TypeScript and @types/node (its devDependencies)
  // are the root's, which saves installing them again.
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=dev', '--no-package-lock'], dir)
  run(join(projectRoot, 'node_modules', '.bin', 'tsc'), ['-p', '.', '--typeRoots', join(projectRoot, 'node_modules', '@types')], dir)

  const database = uniqueName('quickstart')
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${database}`)
  t.after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    await admin.end()
  })
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${database}`
  const pool = createConnectionPool({ connectionString: url.href, min: 0, max: 2 })
  t.after(() => pool.close())
  run(process.execPath, ['dist/migrate.js'], dir, { DATABASE_URL: url.href })
  await pool.query("INSERT INTO products (id, name, price_cents) VALUES (1, 'Umbrella policy', 1200)")
  const { key } = await new ApiKeyStore(pool).mint('quickstart test', ['products:read'])

  const port = await freePort()
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: dir,
    env: {
      ...env,
      DATABASE_URL: url.href,
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      PORT: String(port),
      CACHE_PREFIX: `${uniqueName('qs')}:`,
      RATE_LIMIT_PREFIX: `${uniqueName('qsrl')}:`,
      LOG_LEVEL: 'warn'
    },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  const base = `http://127.0.0.1:${port}`
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`the example exited with ${child.exitCode}: ${stderr}`)
    return (await fetch(`${base}/health/ready`).catch(() => undefined))?.status === 200
  }, 'the example is ready', 30_000)

  const ready = await (await fetch(`${base}/health/ready`)).json() as { checks: Record<string, { status: string }> }
  const checks = Object.entries(ready.checks)
  assert.ok(checks.some(([name, c]) => name.startsWith('postgres') && c.status === 'up'), JSON.stringify(ready))
  assert.equal(ready.checks.redis?.status, 'up', JSON.stringify(ready))

  const get = (path: string, headers: Record<string, string> = { 'x-api-key': key }): Promise<Response> => fetch(`${base}${path}`, { headers })
  const first = await get('/products/1')
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-cache'), 'MISS')
  assert.deepEqual(await first.json(), { id: 1, name: 'Umbrella policy', price_cents: 1200 })
  const second = await get('/products/1')
  assert.equal(second.headers.get('x-cache'), 'HIT-LOCAL', 'the second read comes from the cache')
  assert.deepEqual(await second.json(), { id: 1, name: 'Umbrella policy', price_cents: 1200 })

  assert.equal((await get('/products/1', {})).status, 401, 'no key, no product')
  assert.equal((await get('/products/2')).status, 404)

  // The key's verdict is cached (30 s by default); revoked by hand in SQL, the trigger the package's schema adds has
  // the example refuse it within a second. One request only: the route admits 10 a minute.
  const { key: revoked, id: revokedId } = await new ApiKeyStore(pool).mint('revoked by hand', ['products:read'])
  assert.equal((await get('/products/1', { 'x-api-key': revoked })).status, 200)
  await pool.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [revokedId])
  await new Promise((resolve) => setTimeout(resolve, 1000))
  assert.equal((await get('/products/1', { 'x-api-key': revoked })).status, 401, 'a key revoked in SQL is refused within a second')

  // The route's strict preset admits 10 requests a minute per address.
  const statuses: number[] = []
  for (let i = 0; i < 12 && !statuses.includes(429); i++) statuses.push((await get('/products/1')).status)
  const refused = await get('/products/1')
  assert.equal(refused.status, 429, `statuses before: ${statuses.join(',')}`)
  assert.ok(Number(refused.headers.get('retry-after')) > 0)
  assert.equal((await fetch(`${base}/health/live`)).status, 200, 'probes are never rate limited')

  const metrics = await (await fetch(`${base}/metrics`)).text()
  assert.ok(Number(/^cache_operations\{tier="local",outcome="hit"[^}]*\} (\d+)$/m.exec(metrics)?.[1]) >= 1, metrics)
})
