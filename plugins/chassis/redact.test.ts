import { test } from 'node:test'
import assert from 'node:assert/strict'
import { scrubQuery, scrubUrl } from './redact.js'

const key = 'lck_AAAAAAAAAAAA_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'

test('a key in a query string is replaced, whatever the parameter\'s name, spelling or place; the rest is kept as sent', () => {
  assert.equal(scrubUrl(`/api/v1/leads?api_key=${key}`), '/api/v1/leads?api_key=[REDACTED]')
  assert.equal(scrubUrl('/a?limit=5&TOKEN=abc&state=CA&access_token=x%20y&password='), '/a?limit=5&TOKEN=[REDACTED]&state=CA&access_token=[REDACTED]&password=[REDACTED]')
  assert.equal(scrubUrl('http://h:1/a?api%5Fkey=abc&q=a%20b'), 'http://h:1/a?api%5Fkey=[REDACTED]&q=a%20b')
  assert.equal(scrubUrl('/a?%61%70%69%5F%6B%65%79=abc&q=1'), '/a?%61%70%69%5F%6B%65%79=[REDACTED]&q=1')
  // The platform's own key format is recognised under any name, and in the path.
  assert.equal(scrubUrl(`/a?k=${key}&x=1`), '/a?k=[REDACTED]&x=1')
  assert.equal(scrubUrl(`/keys/${key}`), '/keys/[REDACTED]')
  assert.equal(scrubQuery(`secret=s&sort=-score&x=${key}`), 'secret=[REDACTED]&sort=-score&x=[REDACTED]')
})

test('a URL without a secret is returned unchanged (the same string)', () => {
  for (const url of ['/api/v1/leads', '/api/v1/leads?limit=5&sort=-score', '/a?monkey=1&tokens=2&%zz=3', '']) assert.equal(scrubUrl(url), url)
})

test('a platform key with percent-escaped characters, or sent as api_key[], is still replaced in a logged URL', () => {
  const escaped = `%6Cck_${key.slice(4)}`
  assert.equal(scrubUrl(`/a?x=${escaped}&q=1`), '/a?x=[REDACTED]&q=1')
  assert.equal(scrubUrl(`/leads/${escaped}`), '/leads/[REDACTED]')
  assert.equal(scrubUrl(`/a?x=lck%5F${key.slice(4)}`), '/a?x=[REDACTED]')
  assert.equal(scrubUrl(`/a?x=l%63k_AAAA%41AAAA`), '/a?x=[REDACTED]')
  assert.equal(scrubUrl('/a?api_key[]=abc&token[0]=def&api_key%5B%5D=ghi&limit=5'), '/a?api_key[]=[REDACTED]&token[0]=[REDACTED]&api_key%5B%5D=[REDACTED]&limit=5')
  assert.equal(scrubUrl('/a?q=a%20b&lock_=1'), '/a?q=a%20b&lock_=1')
})

test('an email sent in a URL (path or query, its @ escaped or not) never reaches a logged or traced URL', () => {
  assert.equal(scrubUrl('/api/v1/leads/ann.lee@example.com'), '/api/v1/leads/[REDACTED]')
  assert.equal(scrubUrl('/api/v1/leads?status=new&email=ann.lee%40example.com&limit=20'), '/api/v1/leads?status=new&email=[REDACTED]&limit=20')
  assert.equal(scrubUrl('/api/v1/leads?q=Ann.Lee@Example.COM'), '/api/v1/leads?q=[REDACTED]')
  assert.equal(scrubUrl('/api/v1/leads?status=new'), '/api/v1/leads?status=new', 'a URL without one is unchanged')
})
