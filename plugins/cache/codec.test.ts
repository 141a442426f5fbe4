import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import v8 from 'node:v8'
import { decode, encode, needsTtl, stateToken, tombstone, TOKEN_BYTES } from './codec.js'
import { cachePattern, escapeGlob, globToRegExp } from './glob.js'

const JSON_KIND = 0x03
const V8_KIND = 0x04
const kindOf = (bytes: Buffer): number | undefined => bytes[1]

/** An entry as versions before the JSON kind wrote every value: the header, then V8's structured clone. */
function previousFormat (envelope: { v: unknown, g: number, t?: Record<string, number> }): Buffer {
  return Buffer.concat([Buffer.from([0xca, 0x01]), randomBytes(16), v8.serialize(envelope)])
}

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

test('a value JSON would change, even one field deep in a plain one, is not written as JSON and comes back unchanged', () => {
  const shared = { id: 1 }
  const circular: Record<string, unknown> = { name: 'loop' }
  circular.self = circular
  const holes = [1, , 3] // eslint-disable-line no-sparse-arrays
  const cases: Array<[string, unknown]> = [
    ['a Date', { rows: [{ id: 1, at: new Date('2026-01-02T03:04:05.678Z') }] }],
    ['a BigInt', { rows: [{ n: 2n ** 70n }] }],
    ['a Map', { m: new Map([[1, 'one']]) }],
    ['a Set', { s: new Set([1, 2]) }],
    ['a Buffer', { b: Buffer.from([0, 255]) }],
    ['a Uint8Array', { b: new Uint8Array([1, 2]) }],
    ['a Float64Array', [new Float64Array([0.5])]],
    ['an undefined field', { a: 1, b: undefined }],
    ['an undefined element', [1, undefined]],
    ['undefined alone', undefined],
    ['NaN', { x: Number.NaN }],
    ['Infinity', { x: Number.POSITIVE_INFINITY }],
    ['-0', { x: -0 }],
    ['a hole', holes],
    ['an object reached twice', { a: shared, b: shared }]
  ]
  for (const [what, value] of cases) {
    const bytes = encode({ v: value, g: 0 }, 1000)
    assert.equal(kindOf(bytes), V8_KIND, `${what} goes through V8`)
    assert.deepStrictEqual(decode(bytes)?.v, value, `${what} comes back unchanged`)
  }
  const twice = decode(encode({ v: { a: shared, b: shared }, g: 0 }))?.v as { a: object, b: object }
  assert.equal(twice.a, twice.b, 'an object reached twice is still one object')
  const loop = decode(encode({ v: circular, g: 0 }))?.v as Record<string, unknown>
  assert.equal(loop.self, loop, 'a circular value keeps its cycle')
  assert.ok(!(1 in (decode(encode({ v: holes, g: 0 }))?.v as unknown[])), 'a hole stays a hole')
})

test('a plain JSON value is written as JSON text after the header and its expiry, and comes back equal', () => {
  const value = { data: [{ id: 'a', score: 50, ok: true, none: null, createdAt: '2026-01-02T03:04:05.678Z', nested: { list: [1, 2.5, -3, 'é', '\ud800'] } }], nextCursor: null }
  const before = Date.now()
  const bytes = encode({ v: value, g: 5000, t: { leads: 3 } }, 60_000)
  const after = Date.now()
  assert.equal(kindOf(bytes), JSON_KIND)
  assert.deepEqual(JSON.parse(bytes.toString('utf8', TOKEN_BYTES + 16)), { v: value, g: 5000, t: { leads: 3 } })
  const back = decode(bytes)
  assert.ok(back?.freshUntil !== undefined && back.freshUntil >= before + 60_000 && back.freshUntil <= after + 60_000)
  assert.deepStrictEqual(back, { v: value, g: 5000, t: { leads: 3 }, freshUntil: back.freshUntil, graceUntil: back.freshUntil + 5000 })
  for (const scalar of ['text', 0, 1.5, true, false, null, [], {}]) {
    const entry = encode({ v: scalar, g: 0 }, 1000)
    assert.equal(kindOf(entry), JSON_KIND, `${JSON.stringify(scalar)} is plain JSON`)
    assert.deepStrictEqual(decode(entry)?.v, scalar)
  }
})

test('an entry the previous versions wrote (V8 or JSON after the header, no expiry) still decodes after a rolling deploy', () => {
  const value = { data: [{ id: 'a', at: new Date('2026-01-02T03:04:05.678Z') }], plain: 'text' }
  assert.deepStrictEqual(decode(previousFormat({ v: value, g: 1000, t: { leads: 2 } })), { v: value, g: 1000, t: { leads: 2 } })
  assert.deepStrictEqual(decode(previousFormat({ v: { only: 'json' }, g: 0 })), { v: { only: 'json' }, g: 0 })
  const json = encode({ v: { only: 'json' }, g: 0 })
  assert.equal(kindOf(json), 0x02, 'without a TTL the encoder writes the previous JSON kind')
  assert.deepStrictEqual(decode(json), { v: { only: 'json' }, g: 0 }, 'no expiry inside: the reader asks Redis')
  assert.ok(needsTtl(json) && needsTtl(previousFormat({ v: 1, g: 0 })) && !needsTtl(encode({ v: 1, g: 0 }, 1000)) && !needsTtl(tombstone()))
})

/** The decoder of the version before entries carried their expiry, as it shipped: kinds 1 and 2 only. */
function previousDecode (bytes: Buffer): { v: unknown, g: number } | undefined {
  if (bytes.length <= TOKEN_BYTES || bytes[0] !== 0xca) return undefined
  let envelope: { v: unknown, g: number }
  try {
    if (bytes[1] === 0x02) envelope = JSON.parse(bytes.toString('utf8', TOKEN_BYTES)) as { v: unknown, g: number }
    else if (bytes[1] === 0x01) envelope = v8.deserialize(bytes.subarray(TOKEN_BYTES)) as { v: unknown, g: number }
    else return undefined
  } catch {
    return undefined
  }
  return typeof envelope === 'object' && envelope !== null && typeof envelope.g === 'number' ? envelope : undefined
}

test('an entry of this version read by the previous version\'s decoder is a miss, never an error or a wrong value', () => {
  for (const value of [{ data: [{ id: 'a' }] }, 'text', 7, null, { at: new Date(0), big: 1n }, new Map([[1, 2]])]) {
    const entry = encode({ v: value, g: 1000, t: { leads: 1 } }, 60_000)
    assert.doesNotThrow(() => previousDecode(entry))
    assert.equal(previousDecode(entry), undefined, `${String(value)} is a miss for the previous version`)
  }
})

test('an entry carrying an impossible expiry decodes as a miss', () => {
  const entry = encode({ v: 1, g: 1000 }, 60_000)
  const nan = Buffer.from(entry)
  nan.writeDoubleLE(Number.NaN, TOKEN_BYTES)
  const graceBeforeFresh = Buffer.from(entry)
  graceBeforeFresh.writeDoubleLE(0, TOKEN_BYTES + 8)
  for (const bad of [nan, graceBeforeFresh, entry.subarray(0, TOKEN_BYTES + 16)]) assert.equal(decode(bad), undefined)
})

test('a corrupted, truncated or unknown entry decodes as a miss, never throws', () => {
  const json = encode({ v: { data: [{ id: 'a', score: 1 }] }, g: 0 }, 1000)
  const viaV8 = encode({ v: { at: new Date(0), big: 1n }, g: 0 }, 1000)
  assert.equal(kindOf(json), JSON_KIND)
  assert.equal(kindOf(viaV8), V8_KIND)
  for (const entry of [json, viaV8, encode({ v: { data: [{ id: 'a' }] }, g: 0 }), encode({ v: new Date(0), g: 0 })]) {
    for (let cut = TOKEN_BYTES + 1; cut < entry.length; cut += 3) assert.equal(decode(entry.subarray(0, cut)), undefined, `kind ${kindOf(entry)} cut at ${cut}`)
    const flipped = Buffer.from(entry)
    for (let i = TOKEN_BYTES; i < flipped.length; i += 2) flipped[i] = 0xff ^ (flipped[i] as number)
    assert.doesNotThrow(() => decode(flipped))
  }
  const garbled = Buffer.from(json)
  garbled[TOKEN_BYTES + 16] = 0x7d // '}' where '{' was
  assert.equal(decode(garbled), undefined)
  const unknownKind = Buffer.from(json)
  unknownKind[1] = 0x05
  assert.equal(decode(unknownKind), undefined, 'a kind a later version may add is a miss')
  const notAnEnvelope = (text: string) => Buffer.concat([json.subarray(0, TOKEN_BYTES + 16), Buffer.from(text)])
  for (const text of ['null', '[]', '"v"', '{"v":1}', '{"v":1,"g":"0"}', '{"v":1,"g":0,"t":null}', '{"v":1,"g":0,"t":[1]}', '{"v":1,"g":0,"t":{"a":"1"}}']) assert.equal(decode(notAnEnvelope(text)), undefined, text)
  assert.deepEqual(decode(notAnEnvelope('{"v":1,"g":0,"t":{"a":1}}'))?.t, { a: 1 })
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

test('every write id is its own across many fills and tombstones, through the refills of the random pool they are cut from', () => {
  const seen = new Set<string>()
  const writes = 2000
  for (let i = 0; i < writes; i++) {
    const bytes = i % 3 === 0 ? tombstone() : encode({ v: i, g: 0 }, 1000)
    const id = bytes.subarray(2, TOKEN_BYTES)
    assert.equal(id.length, TOKEN_BYTES - 2)
    seen.add(id.toString('hex'))
  }
  assert.equal(seen.size, writes, 'no write id was handed out twice')
  // Each is random, not a counter: about half the bits differ between consecutive ids.
  const a = BigInt(`0x${encode({ v: 1, g: 0 }).subarray(2, TOKEN_BYTES).toString('hex')}`)
  const b = BigInt(`0x${encode({ v: 1, g: 0 }).subarray(2, TOKEN_BYTES).toString('hex')}`)
  const differing = (a ^ b).toString(2).split('').filter((bit) => bit === '1').length
  assert.ok(differing > 32 && differing < 96, `consecutive ids differ in ${differing} of 128 bits`)
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
