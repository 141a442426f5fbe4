import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { loadQueryParser, normalizeQuery } from './query-normalizer.js'

before(() => loadQueryParser())

const same: Array<[string, string]> = [
  ["SELECT * FROM leads WHERE email = 'ann@example.com'", "SELECT * FROM leads WHERE email = 'bo@example.org'"],
  ["SELECT * FROM leads WHERE name = 'O''Brien'", "SELECT * FROM leads WHERE name = 'Smith'"],
  ["SELECT * FROM leads WHERE note = E'it\\'s'", "SELECT * FROM leads WHERE note = E'plain'"],
  ['SELECT * FROM t WHERE body = $$dollar $quoted$ text$$', "SELECT * FROM t WHERE body = 'x'"],
  ['SELECT * FROM t WHERE body = $tag$x$tag$', "SELECT * FROM t WHERE body = 'y'"],
  ['SELECT * FROM leads WHERE id IN (1, 2, 3)', 'SELECT * FROM leads WHERE id IN (4)'],
  ['SELECT * FROM leads WHERE score > -5', 'SELECT * FROM leads WHERE score > 17'],
  ["SELECT '2026-01-01'::date, 3.5::numeric", "SELECT '1999-12-31'::date, 0.25::numeric"],
  ['SELECT * FROM leads -- first\nWHERE id = 1', '/* another */ SELECT *   FROM leads\n\tWHERE id = 2'],
  ['select * from leads where id = $1', 'SELECT * FROM leads WHERE id = $1']
]
const different: Array<[string, string]> = [
  ['SELECT * FROM leads WHERE id = 1', 'SELECT * FROM agents WHERE id = 1'],
  ['SELECT id FROM leads', 'SELECT email FROM leads'],
  ['SELECT * FROM leads ORDER BY id', 'SELECT * FROM leads ORDER BY email'],
  ['SELECT * FROM leads WHERE id = 1', 'SELECT * FROM leads WHERE id > 1']
]

test('queries that differ only in literals, IN-list lengths, comments or whitespace share a fingerprint', () => {
  for (const [a, b] of same) assert.equal(normalizeQuery(a).fingerprint, normalizeQuery(b).fingerprint, `${a} ~ ${b}`)
})

test('queries that differ in structure do not', () => {
  for (const [a, b] of different) assert.notEqual(normalizeQuery(a).fingerprint, normalizeQuery(b).fingerprint, `${a} !~ ${b}`)
})

test('no literal survives in the normalized text, parsed or not', () => {
  const secrets = ['ann@example.com', "O''Brien", 'Brien', "it\\'s", 'dollar $quoted$ text', '-5', '3.5', '2026-01-01', 'first']
  const texts = [...same.map(([a]) => a), 'SELEC broken WHERE email = \'ann@example.com\' AND n = -5 AND x = 3.5 AND d = \'2026-01-01\' -- first']
  for (const sql of texts) {
    const { text } = normalizeQuery(sql)
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} in ${text}`)
  }
  const broken = normalizeQuery("SELEC broken WHERE email = 'ann@example.com'")
  assert.equal(broken.parsed, false)
  assert.match(broken.fingerprint, /^fb/)
  assert.equal(normalizeQuery("SELEC broken WHERE email = 'x@y.z'").fingerprint, broken.fingerprint)
})

test('IN lists are shown collapsed', () => {
  assert.equal(normalizeQuery('SELECT * FROM leads WHERE id IN (1, 2, 3)').text, 'SELECT * FROM leads WHERE id IN ($1, ...)')
})
