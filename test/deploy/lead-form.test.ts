/// <reference lib="dom" />
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { buildApp } from '../../services/api/app.js'
import { PAGE_CSP } from '../../services/api/routes/page.js'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { NGINX_DIR, preparePrefix, startNginx, templateConfig } from '../helpers/nginx.js'

// The lead-capture page in a real headless Chromium, through the shipped NGINX in front of the api, as a visitor
// uses it. Screenshots go to a temp folder the test prints, never into the repository.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const LIMIT = 4
const cleanups: Array<() => unknown> = []
const scope = { after: (fn: () => unknown) => { cleanups.push(fn) } }
const screens = join(tmpdir(), `lead-form-screens-${process.pid}`)
let db: TestSchema
let edge = ''
let browser: Browser

before(async () => {
  db = await createTestSchema()
  cleanups.push(() => db.drop())
  // The anonymous POST is limited per address by the default preset; a small one shows the 429 path.
  const app = await buildApp(testApiConfig(db, {
    CACHE_PREFIX: `${uniqueName('form')}:`, TRUST_PROXY: '127.0.0.1/32', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX_REQUESTS: String(LIMIT)
  }))
  const apiPort = await freePort()
  await app.listen({ host: '127.0.0.1', port: apiPort })
  cleanups.push(() => app.close())
  const [publicPort, statusPort, keyGatePort, unused1, unused2] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  await startNginx(scope, preparePrefix(templateConfig({ api: [apiPort], dataService: unused1, orchestrator: unused2, publicPort, statusPort, keyGatePort })), publicPort)
  edge = `http://127.0.0.1:${publicPort}`
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
  cleanups.push(() => browser.close())
  mkdirSync(screens, { recursive: true })
})

after(async () => {
  for (const fn of cleanups.reverse()) await fn()
})

async function openForm (): Promise<Page> {
  const page = await browser.newPage()
  const problems: string[] = []
  page.on('pageerror', (e) => problems.push(String(e)))
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()) })
  await page.goto(`${edge}/quote/`, { waitUntil: 'networkidle0' })
  await page.waitForSelector('form[data-ready="true"]', { timeout: 10_000 })
  assert.deepEqual(problems, [], 'the page loads without script or CSP errors')
  return page
}

async function fill (page: Page, values: Record<string, string>): Promise<void> {
  for (const [name, value] of Object.entries(values)) {
    const tag = await page.$eval(`#${name}`, (el) => el.tagName)
    if (tag === 'SELECT') await page.select(`#${name}`, value)
    else {
      await page.$eval(`#${name}`, (el) => { (el as HTMLInputElement).value = '' })
      await page.type(`#${name}`, value)
    }
  }
}

const errorOf = async (page: Page, name: string): Promise<string | null> =>
  page.$eval(`#${name}-error`, (el) => (el as HTMLElement).hidden ? null : el.textContent)
const statusText = async (page: Page): Promise<string> => page.$eval('#status', (el) => el.textContent ?? '')
const person = (email: string): Record<string, string> => ({ firstName: 'Ann', lastName: 'Lee', email, phone: '+1 555 010 2000', product: 'home', state: 'TX' })
const leadsWith = async (email: string): Promise<number> => Number((await db.sql<{ n: string }>('SELECT count(*) AS n FROM leads WHERE email = $1', [email]))[0]?.n)

test('the page and its hashed assets come through NGINX\'s static_cache with the page CSP and the origin\'s cache lifetimes', async () => {
  const first = await fetch(`${edge}/quote/`)
  const html = await first.text()
  assert.equal(first.headers.get('cache-control'), 'public, max-age=60')
  assert.equal(first.headers.get('content-security-policy'), PAGE_CSP)
  const again = await fetch(`${edge}/quote/`)
  await again.text()
  assert.equal(again.headers.get('x-cache-status'), 'HIT', 'the second request is answered from static_cache')
  const assets = [...html.matchAll(/"(\/static\/[a-z-]+\.[0-9a-f]{12}\.(?:js|css|json|svg))"/g)].map((m) => m[1] ?? '')
  assert.equal(assets.length, 4, 'icon, style, script and schema under content-hashed names')
  for (const asset of assets) {
    await (await fetch(`${edge}${asset}`)).arrayBuffer()
    const res = await fetch(`${edge}${asset}`)
    await res.arrayBuffer()
    assert.equal(res.status, 200, asset)
    assert.equal(res.headers.get('cache-control'), 'public, max-age=604800, immutable', asset)
    assert.equal(res.headers.get('x-cache-status'), 'HIT', asset)
  }
  // A query string neither makes a new copy nor goes past the cache to the origin.
  const asset = assets[0] ?? ''
  for (const query of ['?r=1', '?r=2']) {
    const res = await fetch(`${edge}${asset}${query}`)
    await res.arrayBuffer()
    assert.equal(res.headers.get('x-cache-status'), 'HIT', `${asset}${query} is served from the cache`)
  }
  const missing = await fetch(`${edge}/static/lead-form.000000000000.js`)
  assert.equal(missing.status, 404)
  assert.match(String(missing.headers.get('content-type')), /application\/json/)
  assert.notEqual(missing.headers.get('cache-control'), 'public, max-age=604800, immutable', 'a 404 is never cached as immutable')
})

test('NGINX sends the page the same security headers as the services, with the page\'s own CSP', () => {
  const lines = (file: string): string[] => readFileSync(join(NGINX_DIR, file), 'utf8').split('\n').filter((l) => l.startsWith('add_header'))
  const page = lines('page-security-headers.conf')
  const api = lines('security-headers.conf')
  assert.equal(page.length, api.length)
  assert.ok(page.includes(`add_header Content-Security-Policy "${PAGE_CSP}" always;`))
  assert.deepEqual(page.filter((l) => !l.includes('Content-Security-Policy')), api.filter((l) => !l.includes('Content-Security-Policy')))
})

test('every field has a label, and an empty or malformed form is refused at the fields without a request', async () => {
  const page = await openForm()
  const unlabelled = await page.$$eval('input, select', (els) => els.filter((el) => (el as HTMLInputElement).labels?.length !== 1 || !(el as HTMLInputElement).labels?.[0]?.textContent?.trim()).map((el) => el.id))
  assert.deepEqual(unlabelled, [])
  let posts = 0
  page.on('request', (r) => { if (r.method() === 'POST') posts++ })
  await page.click('button[type=submit]')
  for (const name of ['firstName', 'lastName', 'email', 'product', 'state']) {
    assert.ok(await errorOf(page, name), `${name} shows an error`)
    assert.equal(await page.$eval(`#${name}`, (el) => el.getAttribute('aria-invalid')), 'true')
  }
  assert.equal(await errorOf(page, 'phone'), null, 'phone is optional')
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'firstName', 'focus moves to the first field at fault')
  await fill(page, { ...person('ann.lee@'), phone: '12' })
  await page.click('button[type=submit]')
  assert.match(await errorOf(page, 'email') ?? '', /Enter an email address/)
  assert.match(await errorOf(page, 'phone') ?? '', /Enter a phone number/)
  for (const fixed of ['firstName', 'lastName', 'product', 'state']) assert.equal(await errorOf(page, fixed), null, `${fixed} is fixed and its error gone`)
  await page.screenshot({ path: join(screens, 'field-errors.png'), fullPage: true })
  assert.equal(posts, 0, 'nothing is sent while a field is wrong')
  await page.close()
})

test('a valid submission is confirmed and stored; the same person again is told it is a duplicate', async () => {
  const email = `${uniqueName('ann')}@example.com`
  const page = await openForm()
  await fill(page, person(email))
  await page.click('button[type=submit]')
  await page.waitForSelector('#confirmation:not([hidden])', { timeout: 10_000 })
  await page.screenshot({ path: join(screens, 'confirmation.png'), fullPage: true })
  assert.equal(await leadsWith(email), 1)

  const again = await openForm()
  await fill(again, person(email))
  await again.click('button[type=submit]')
  await again.waitForFunction(() => document.querySelector('#status')?.textContent?.includes('already received'), { timeout: 10_000 })
  assert.match(await errorOf(again, 'email') ?? '', /already have a request from this email/)
  assert.equal(await leadsWith(email), 1)
  await page.close()
  await again.close()
})

test('a field error from the API is shown next to its field', async () => {
  const page = await openForm()
  // What the browser checked passes; the API is sent a value it refuses, as an older page or a changed rule would.
  await page.setRequestInterception(true)
  page.on('request', (r) => {
    if (r.method() === 'POST') void r.continue({ postData: JSON.stringify({ ...JSON.parse(r.postData() ?? '{}') as object, email: 'not-an-email' }) })
    else void r.continue()
  })
  await fill(page, person(`${uniqueName('api')}@example.com`))
  await page.click('button[type=submit]')
  await page.waitForFunction(() => !(document.querySelector('#email-error') as HTMLElement).hidden, { timeout: 10_000 })
  assert.match(await errorOf(page, 'email') ?? '', /Enter an email address.*must match format "email"/)
  assert.match(await statusText(page), /Please correct the fields/)
  await page.close()
})

test('past the rate limit the visitor reads when to try again', async () => {
  const page = await openForm()
  let text = ''
  for (let i = 0; i <= LIMIT && !text.includes('Too many'); i++) {
    await fill(page, person(`${uniqueName('burst')}@example.com`))
    const answered = page.waitForResponse((r) => r.request().method() === 'POST')
    await page.click('button[type=submit]')
    const res = await answered
    if (res.status() === 201) {
      await page.reload({ waitUntil: 'networkidle0' })
      await page.waitForSelector('form[data-ready="true"]')
      continue
    }
    await page.waitForFunction(() => !(document.querySelector('button[type=submit]') as HTMLButtonElement).disabled)
    text = await statusText(page)
  }
  assert.match(text, /^Too many requests from your connection\. Please try again in \d+ seconds\.$/)
  await page.screenshot({ path: join(screens, 'rate-limited.png'), fullPage: true })
  await page.close()
})

test('screenshots are written outside the repository', (t) => {
  t.diagnostic(`screenshots: ${screens}`)
  assert.ok(!screens.startsWith(process.cwd()))
})
