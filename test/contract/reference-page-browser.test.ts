import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import puppeteer, { type Browser } from 'puppeteer-core'
import { buildApp } from '../../services/api/app.js'
import { createTestSchema, testApiConfig, type TestSchema } from '../helpers/database.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
let db: TestSchema
let app: FastifyInstance
let origin: string
let browser: Browser

before(async () => {
  db = await createTestSchema()
  app = await buildApp(testApiConfig(db))
  origin = await app.listen({ host: '127.0.0.1', port: 0 })
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
})

after(async () => {
  await browser?.close()
  await app?.close()
  await db?.drop()
})

test('the reference page runs under its CSP in a browser: every operation shown, the key scheme offered, no violation', async () => {
  const page = await browser.newPage()
  const violations: string[] = []
  page.on('console', (message) => { if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text()) })
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e: { violatedDirective: string, blockedURI: string }) => { console.error(`Refused to load: ${e.violatedDirective} ${e.blockedURI}`) })
  })
  const res = await page.goto(`${origin}/api/v1/docs/`, { waitUntil: 'networkidle0', timeout: 60000 })
  assert.equal(res?.status(), 200)
  await page.waitForSelector('.opblock', { timeout: 60000 })
  const spec = (await app.inject('/api/v1/openapi.json')).json<{ paths: Record<string, Record<string, unknown>> }>()
  const operations = Object.values(spec.paths).reduce((n, item) => n + Object.keys(item).length, 0)
  assert.equal(await page.$$eval('.opblock', (els) => els.length), operations)
  assert.ok(await page.$('.btn.authorize'), 'the Authorize button offers the key schemes')
  await page.click('.btn.authorize')
  await page.waitForSelector('.modal-ux', { timeout: 30000 })
  assert.match(await page.$eval('.modal-ux', (el) => el.textContent ?? ''), /x-api-key/)
  assert.deepEqual(violations, [])
})
