import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { buildApp } from './app.js'
import { publicDir } from '../platform/paths.js'
import { createTestSchema, testApiConfig, uniqueName, type TestSchema } from '../../test/helpers/database.js'

let db: TestSchema
before(async () => { db = await createTestSchema() })
after(async () => { await db?.drop() })

test('a Range past the end of the page or an asset answers 416 with no-store, not the asset\'s week-long immutable caching', async (t) => {
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('page')}:` }))
  t.after(() => app.close())
  const asset = readdirSync(join(publicDir, 'static')).find((f) => f.endsWith('.js'))
  for (const url of [`/static/${asset ?? ''}`, '/quote/']) {
    const ok = await app.inject(url)
    assert.equal(ok.statusCode, 200, url)
    assert.match(ok.headers['cache-control'] as string, /^public/)
    const refused = await app.inject({ url, headers: { range: 'bytes=99999999-' } })
    assert.equal(refused.statusCode, 416, url)
    assert.equal(refused.headers['cache-control'], 'no-store', url)
    assert.equal(refused.headers['cache-tag'], undefined, url)
    assert.equal(refused.headers['surrogate-key'], undefined, url)
    const part = await app.inject({ url, headers: { range: 'bytes=0-9' } })
    assert.equal(part.statusCode, 206, url)
    assert.equal(part.headers['cache-control'], ok.headers['cache-control'], url)
  }
})
