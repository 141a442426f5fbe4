import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decode, encode, stateToken, tombstone, TOKEN_BYTES } from './codec.js'
import { cachePattern, escapeGlob, globToRegExp } from './glob.js'

test('Date, BigInt, Map, Set, Buffer and typed arrays survive encoding', () => {
  const value = { at: new Date('2026-01-02T03:04:05.678Z'), big: 12345678901234567890n, map: new Map([['a', 1]]), set: new Set(['x']), buf: Buffer.from('bytes'), f32: new Float32Array([1.5]), nested: [{ n: null, u: undefined }] }
  const back = decode(encode({ v: value, g: 0 }))?.v as typeof value
  assert.ok(back.at instanceof Date)
  assert.equal(back.at.toISOString(), value.at.toISOString())
  assert.equal(back.big, value.big)
  assert.deepEqual([...back.map], [['a', 1]])
  assert.ok(back.set.has('x'))
  assert.ok(Buffer.isBuffer(back.buf))
  assert.equal(back.buf.toString(), 'bytes')
  assert.ok(back.f32 instanceof Float32Array)
  assert.deepEqual(back.nested, [{ n: null, u: undefined }])
})

test('values that would come back changed are refused with a clear error', () => {
  class Money { constructor (public cents: number) {} }
  assert.throws(() => encode({ v: { price: new Money(5) }, g: 0 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CACHE_UNSUPPORTED_VALUE')
    assert.match(e.message, /value\.price is an instance of Money/)
    return true
  })
  assert.throws(() => encode({ v: { fn: () => 1 }, g: 0 }), /value\.fn is a function/)
  assert.throws(() => encode({ v: [Symbol('s')], g: 0 }), /value\[0\] is a symbol/)
})

test('tombstones and foreign bytes decode as misses; tokens are the first bytes', () => {
  const t = tombstone()
  assert.equal(decode(t), undefined)
  assert.equal(decode(Buffer.from('plain string')), undefined)
  const payload = encode({ v: 1, g: 0 })
  assert.equal(stateToken(payload).length, TOKEN_BYTES)
  assert.notDeepEqual(stateToken(payload), stateToken(encode({ v: 1, g: 0 })), 'every write has its own token')
  assert.equal(stateToken(undefined).length, 0)
})

test('glob escaping keeps a user-supplied * from widening a pattern', () => {
  assert.equal(escapeGlob('a*b?[c]\\'), 'a\\*b\\?\\[c\\]\\\\')
  const id = '*'
  const pattern = cachePattern`lead:${id}:*`
  assert.equal(pattern, 'lead:\\*:*')
  const re = globToRegExp(pattern)
  assert.ok(re.test('lead:*:x'))
  assert.ok(!re.test('lead:42:x'))
})

test('glob matching follows Redis semantics', () => {
  const cases: Array<[string, string, boolean]> = [
    ['h?llo', 'hello', true], ['h?llo', 'hllo', false], ['h*llo', 'heeeello', true], ['h[ae]llo', 'hallo', true],
    ['h[ae]llo', 'hillo', false], ['h[^e]llo', 'hallo', true], ['h[^e]llo', 'hello', false], ['h[a-b]llo', 'hbllo', true],
    ['a.b*', 'a.bc', true], ['a.b*', 'axbc', false], ['x/*', 'x/y/z', true]
  ]
  for (const [glob, text, expected] of cases) assert.equal(globToRegExp(glob).test(text), expected, `${glob} ~ ${text}`)
})
