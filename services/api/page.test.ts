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

test('a failed If-Match or If-Unmodified-Since on the page or an asset answers 412 PRECONDITION_FAILED and a Range past its end 416 RANGE_NOT_SATISFIABLE, not BAD_REQUEST', async (t) => {
  const app = await buildApp(testApiConfig(db, { CACHE_PREFIX: `${uniqueName('page')}:` }))
  t.after(() => app.close())
  const asset = readdirSync(join(publicDir, 'static')).find((f) => f.endsWith('.css'))
  for (const url of [`/static/${asset ?? ''}`, '/quote/']) {
    const ok = await app.inject(url)
    assert.equal(ok.statusCode, 200, url)
    const preconditions: Array<Record<string, string>> = [{ 'if-match': '"not-the-etag"' }, { 'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' }]
    for (const headers of preconditions) {
      const failed = await app.inject({ url, headers })
      assert.equal(failed.statusCode, 412, `${url} ${JSON.stringify(headers)}`)
      assert.deepEqual(Object.keys(failed.json()), ['statusCode', 'code', 'error', 'message'])
      assert.equal(failed.json().code, 'PRECONDITION_FAILED', `${url} ${JSON.stringify(headers)}`)
      assert.equal(failed.headers['cache-control'], 'no-store', url)
    }
    // The precondition that holds is met: the file is sent.
    assert.equal((await app.inject({ url, headers: { 'if-match': ok.headers.etag as string } })).statusCode, 200, url)
    const unsatisfiable = await app.inject({ url, headers: { range: 'bytes=99999999-' } })
    assert.equal(unsatisfiable.statusCode, 416, url)
    assert.equal(unsatisfiable.json().code, 'RANGE_NOT_SATISFIABLE', url)
    assert.equal(unsatisfiable.json().statusCode, 416, url)
    // What the file's length is, so the client can ask again (RFC 9110 15.5.17).
    assert.equal(unsatisfiable.headers['content-range'], `bytes */${String(ok.headers['content-length'])}`, url)
  }
})
