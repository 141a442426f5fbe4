import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { buildService } from './service.js'
import { composeSchema, loadConfig } from './config.js'
import { chassisConfigFragment, type ChassisConfig } from './config-schema.js'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { stream, lines: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

test('a key sent in a query string is written to no log line: the request line keeps the URL with the value redacted', async (t) => {
  const log = capture()
  const config = loadConfig<ChassisConfig>(composeSchema(chassisConfigFragment), { env: { LOG_LEVEL: 'trace' }, dotenv: false })
  const app = await buildService({ name: 'test', config, logger: { stream: log.stream }, routes: [(a) => a.get('/things', { schema: { querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 100 } } } } }, async () => ({ ok: true }))] })
  t.after(() => app.close())
  const key = 'lck_AAAAAAAAAAAA_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'
  await app.inject(`/things?api_key=${key}&limit=5`)
  await app.inject(`/missing?token=s3cr3t-token&x=${key}`)
  const text = JSON.stringify(log.lines())
  assert.ok(!text.includes(key) && !text.includes('s3cr3t-token'), text)
  const urls = log.lines().filter((l) => l.msg === 'request completed').map((l) => (l.req as { url: string }).url)
  // `limit` is declared, so its value is shown; `/missing` is no route's word, and `x` is declared by none.
  assert.deepEqual(urls, ['/things?api_key=[REDACTED]&limit=5', '/[REDACTED]?token=[REDACTED]&[REDACTED]=[REDACTED]'])
})
