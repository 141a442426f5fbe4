import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startCdnFakes } from '../test/helpers/cdn-fakes.js'
import { projectRoot } from '../services/platform/paths.js'

const ZONE = 'zone0123456789abcdef'
const TOKEN = 'cf-token-SECRET-0123456789'
const script = join(projectRoot, 'dist', 'scripts', 'cdn-purge.js')

async function run (args: string[], env: Record<string, string>): Promise<{ code: number, out: string }> {
  // A folder of its own, so no .env file of the project is read.
  const cwd = mkdtempSync(join(tmpdir(), 'cdn-purge-'))
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [script, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env } })
    return { code: 0, out: stdout + stderr }
  } catch (error) {
    const e = error as { code: number, stdout: string, stderr: string }
    return { code: e.code, out: e.stdout + e.stderr }
  }
}

test('npm run cdn:purge purges paths and tags through the configured provider and never prints the key', async (t) => {
  const fakes = await startCdnFakes({ zoneId: ZONE, apiKey: TOKEN })
  t.after(fakes.close)
  const env = { CDN_PROVIDER: 'cloudflare', CDN_ZONE_ID: ZONE, CDN_API_KEY: TOKEN, CDN_SITE_URL: 'https://leads.example.com', CDN_API_URL: fakes.url }
  const ok = await run(['/index.html', '--tag', 'lead-form'], env)
  assert.equal(ok.code, 0, ok.out)
  assert.match(ok.out, /cloudflare: purged 1 \(\/index.html\) id cf-/)
  assert.match(ok.out, /cloudflare: purged 1 \(lead-form\) id cf-/)
  assert.equal(fakes.calls.length, 2)

  const refused = await run(['/index.html'], { ...env, CDN_API_KEY: 'wrong-token-0123456789' })
  assert.equal(refused.code, 1)
  assert.match(refused.out, /CDN_PURGE_FAILED cloudflare refused the purge: HTTP 403: 10000 Authentication error/)
  for (const r of [ok, refused]) assert.ok(!r.out.includes(TOKEN) && !r.out.includes('wrong-token-0123456789'), r.out)
})

test('npm run cdn:purge -- --changed purges only the files a deploy changed', async (t) => {
  const fakes = await startCdnFakes({ zoneId: ZONE, apiKey: TOKEN })
  t.after(fakes.close)
  const dir = mkdtempSync(join(tmpdir(), 'manifests-'))
  writeFileSync(join(dir, 'old.json'), JSON.stringify({ '/index.html': 'a1', '/static/app.1.js': 'x' }))
  writeFileSync(join(dir, 'new.json'), JSON.stringify({ '/index.html': 'a2', '/static/app.2.js': 'y' }))
  const env = { CDN_PROVIDER: 'fastly', CDN_ZONE_ID: ZONE, CDN_API_KEY: TOKEN, CDN_SITE_URL: 'https://leads.example.com', CDN_API_URL: fakes.url }
  const r = await run(['--changed', join(dir, 'old.json'), join(dir, 'new.json')], env)
  assert.equal(r.code, 0, r.out)
  assert.deepEqual(fakes.calls.map((c) => c.path).sort(), ['/purge/leads.example.com/index.html', '/purge/leads.example.com/static/app.1.js'])
})

test('CDN_PROVIDER=none purges nothing and says so; bad input exits 2 with the reason', async () => {
  const none = await run(['/index.html'], { CDN_PROVIDER: 'none' })
  assert.equal(none.code, 0)
  assert.match(none.out, /CDN_PROVIDER is none: nothing purged/)
  const noZone = await run(['/index.html'], { CDN_PROVIDER: 'cloudflare', CDN_API_KEY: TOKEN })
  assert.equal(noZone.code, 2)
  assert.match(noZone.out, /CDN_INVALID_OPTIONS.*zone id/)
  const badProvider = await run(['/index.html'], { CDN_PROVIDER: 'akamai' })
  assert.equal(badProvider.code, 2)
  assert.match(badProvider.out, /CDN_PROVIDER must be one of none, cloudflare, fastly, cloudfront/)
  const badPath = await run(['index.html'], { CDN_PROVIDER: 'none' })
  assert.equal(badPath.code, 2)
  assert.equal((await run([], {})).code, 2)
})
