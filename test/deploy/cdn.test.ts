import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { projectRoot, publicDir } from '../../services/platform/paths.js'
import { presets } from '@lead-chassis/plugins/rate-limit'
import { buildApp } from '../../services/api/app.js'
import { createTestSchema, testApiConfig, uniqueName, SERVICE_HEADERS } from '../helpers/database.js'
import { NGINX_DIR } from '../helpers/nginx.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- walking parsed YAML
const CDN = join(projectRoot, 'deploy', 'cdn')
const cloudflare = parse(readFileSync(join(CDN, 'cloudflare.yaml'), 'utf8')) as Obj
const cloudfront = parse(readFileSync(join(CDN, 'cloudfront.yaml'), 'utf8')) as Obj
const fastly = readFileSync(join(CDN, 'fastly.vcl'), 'utf8')
const DAY = 86400
type Decision = 'bypass' | number

// What each path must get at the edge: API paths are never stored; the rest by the rules each class of path gets.
const EXPECTED: Record<string, Decision> = {
  '/api/v1/leads': 'bypass',
  '/api/v1/admin/cache': 'bypass',
  '/api/v1/leads/file.js': 'bypass',
  '/data/v1/reports/funnel': 'bypass',
  '/orchestrator/v1/route-batch': 'bypass',
  '/quote/': 60,
  '/static/app.css': 7 * DAY,
  '/static/logo.png': 7 * DAY,
  '/uploads/photo.jpg': 30 * DAY,
  '/assets/app.js': 7 * DAY,
  '/assets/site.css': 7 * DAY,
  '/img/logo.png': 30 * DAY,
  '/img/hero.webp': 30 * DAY
}

const extensionOf = (path: string): string => /\.([a-z0-9]+)$/.exec(path)?.[1] ?? ''

/** Cloudflare cache rules: every matching rule applies, later ones override earlier ones. */
function cloudflareDecision (path: string): Decision | undefined {
  let decision: Decision | undefined
  for (const rule of cloudflare.cache_rules.rules as Obj[]) {
    const prefixes = [...String(rule.expression).matchAll(/starts_with\(http\.request\.uri\.path, "([^"]+)"\)/g)].map((m) => m[1] ?? '')
    const extensions = [...String(rule.expression).matchAll(/extension in \{([^}]*)\}/g)].flatMap((m) => (m[1] ?? '').match(/"([^"]+)"/g)?.map((e) => e.slice(1, -1)) ?? [])
    if (!prefixes.some((p) => path.startsWith(p)) && !extensions.includes(extensionOf(path))) continue
    decision = rule.action_parameters.cache === false ? 'bypass' : rule.action_parameters.edge_ttl.default
  }
  return decision
}

/** CloudFront: the first behaviour whose pattern matches, else the default; TTL from its cache policy. */
function cloudfrontDecision (path: string): Decision | undefined {
  const config = cloudfront.Resources.Distribution.Properties.DistributionConfig
  const glob = (pattern: string): RegExp => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`)
  const behaviour = (config.CacheBehaviors as Obj[]).find((b) => glob(b.PathPattern).test(path)) ?? config.DefaultCacheBehavior
  const policy = behaviour.CachePolicyId
  if (policy === '4135ea2d-6df8-44a3-9df3-4b5a84be39ad') return 'bypass' // AWS managed CachingDisabled
  const ttl = cloudfront.Resources[policy.Ref].Properties.CachePolicyConfig
  assert.equal(ttl.MinTTL, ttl.MaxTTL, 'the TTL is fixed at the edge')
  return ttl.DefaultTTL
}

/** Fastly: pass in vcl_recv, else the first branch of vcl_fetch that matches. */
function fastlyDecision (path: string): Decision | undefined {
  const recv = /sub vcl_recv \{([\s\S]*?)\n\}/.exec(fastly)?.[1] ?? ''
  const pass = /if \(req\.url\.path ~ "([^"]+)"\) \{\s*return\(pass\);/.exec(recv)?.[1]
  if (pass && new RegExp(pass).test(path)) return 'bypass'
  const fetch = /sub vcl_fetch \{([\s\S]*?)\n\}/.exec(fastly)?.[1] ?? ''
  for (const m of fetch.matchAll(/req\.url\.(path|ext) ~ "([^"]+)"\) \{\s*set beresp\.ttl = (\d+)(s|d);/g)) {
    const subject = m[1] === 'ext' ? extensionOf(path) : path
    if (new RegExp(m[2] ?? '').test(subject)) return Number(m[3]) * (m[4] === 'd' ? DAY : 1)
  }
  return 'bypass'
}

test('the three CDNs cache each path alike: APIs bypass, static 7 days, uploads 30, scripts and styles 7, images 30', () => {
  for (const [path, expected] of Object.entries(EXPECTED)) {
    assert.equal(cloudflareDecision(path), expected, `cloudflare ${path}`)
    assert.equal(cloudfrontDecision(path), expected, `cloudfront ${path}`)
    assert.equal(fastlyDecision(path), expected, `fastly ${path}`)
  }
})

test('the CDN rules agree with what the origin says: APIs forbid shared caching, NGINX sends the same static TTLs', async (t) => {
  const db = await createTestSchema()
  t.after(() => db.drop())
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('cdn')}:` }))
  t.after(() => app.close())
  for (const url of ['/api/v1/leads', '/api/v1/leads?status=new', '/api/v1/leads/00000000-0000-4000-8000-000000000000']) {
    const res = await app.inject({ url, headers: SERVICE_HEADERS })
    const cacheControl = String(res.headers['cache-control'])
    assert.match(cacheControl, /private|no-store/, `${url} answered ${res.statusCode} with cache-control ${cacheControl}`)
    assert.equal(cloudflareDecision(url.split('?')[0] ?? url), 'bypass')
  }
  const created = await app.inject({ method: 'POST', url: '/api/v1/leads', payload: { firstName: 'A', lastName: 'B', email: 'cdn@example.com', product: 'auto', state: 'CA' } })
  assert.equal(created.headers['cache-control'], 'no-store')
  const conf = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
  const block = /location \/uploads\/ \{([\s\S]*?)\n {4}\}/.exec(conf)?.[1] ?? ''
  assert.equal(Number(/Cache-Control "public, max-age=(\d+)"/.exec(block)?.[1]), cloudflareDecision('/uploads/photo.jpg'), 'NGINX /uploads/ max-age agrees with the CDN')
  // The page and its assets: the origin's Cache-Control, which NGINX passes on and keeps them by, is what each CDN keeps.
  const manifest = JSON.parse(readFileSync(join(publicDir, 'manifest.json'), 'utf8')) as Record<string, string>
  for (const path of Object.keys(manifest)) {
    const res = await app.inject({ url: path })
    assert.equal(res.statusCode, 200, path)
    const maxAge = Number(/max-age=(\d+)/.exec(String(res.headers['cache-control']))?.[1])
    for (const [cdn, decide] of [['cloudflare', cloudflareDecision], ['cloudfront', cloudfrontDecision], ['fastly', fastlyDecision]] as const) {
      assert.equal(decide(path), maxAge, `${cdn} keeps ${path} as long as the origin says (${String(res.headers['cache-control'])})`)
    }
    assert.equal(res.headers['cache-tag'], 'lead-form', 'Cloudflare purges the page by its tag')
    assert.equal(res.headers['surrogate-key'], 'lead-form', 'Fastly purges the page by its surrogate key')
  }
  for (const prefix of ['/static/', '/quote/']) {
    const location = new RegExp(`location ${prefix} \\{([\\s\\S]*?)\\n    \\}`).exec(conf)?.[1] ?? ''
    assert.match(location, /proxy_cache static_cache;/, `NGINX caches ${prefix}`)
    assert.doesNotMatch(location, /add_header Cache-Control/, `NGINX passes the origin's Cache-Control for ${prefix}`)
  }
})

test('edge rate limits match the services\' presets and block; security features are on', () => {
  const rules = cloudflare.rate_limiting.rules as Obj[]
  const admin = rules.find((r) => String(r.expression).includes('/api/v1/admin/')) as Obj
  const api = rules.find((r) => !String(r.expression).includes('/admin/')) as Obj
  assert.ok(rules.indexOf(admin) < rules.indexOf(api), 'the admin rule comes first')
  assert.equal(admin.ratelimit.requests_per_period, presets.strict.limit)
  assert.equal(admin.ratelimit.period * 1000, presets.strict.windowMs)
  assert.equal(api.ratelimit.requests_per_period, presets.apiKey.limit)
  assert.equal(api.ratelimit.period * 1000, presets.apiKey.windowMs)
  for (const r of rules) assert.equal(r.action, 'block')
  const s = cloudflare.settings
  for (const key of ['http3', 'bot_fight_mode', 'always_use_https']) assert.equal(s[key], 'on', key)
  // Settings Cloudflare has retired: the API refuses them, so a config that sets them cannot be applied.
  for (const retired of ['minify', 'brotli', 'mirage', 'server_side_exclude', 'mobile_redirect']) assert.equal(s[retired], undefined, `${retired} is retired`)
  assert.equal(s.polish, 'lossless')
  assert.ok((cloudflare.waf.rules as Obj[]).some((r) => /OWASP/.test(r.description) && r.action === 'execute'))

  const waf = cloudfront.Resources.WebAcl.Properties.Rules as Obj[]
  const rate = (name: string): Obj => waf.find((r) => r.Name === name)?.Statement.RateBasedStatement
  assert.deepEqual([rate('admin-10-per-minute').Limit, rate('admin-10-per-minute').EvaluationWindowSec * 1000], [presets.strict.limit, presets.strict.windowMs])
  assert.deepEqual([rate('api-1000-per-minute').Limit, rate('api-1000-per-minute').EvaluationWindowSec * 1000], [presets.apiKey.limit, presets.apiKey.windowMs])
  assert.ok(waf.some((r) => r.Statement.ManagedRuleGroupStatement?.Name === 'AWSManagedRulesCommonRuleSet'))
  assert.equal(cloudfront.Resources.Distribution.Properties.DistributionConfig.HttpVersion, 'http2and3')

  const checks = [...fastly.matchAll(/check_rate\(client\.ip, (rc_\w+), 1, (\d+), (\d+),/g)].map((m) => [m[1], Number(m[2]), Number(m[3])])
  assert.deepEqual(checks, [['rc_admin', 60, presets.strict.limit], ['rc_api', 60, presets.apiKey.limit]])
  assert.match(fastly, /set obj\.status = 429;/)
})
