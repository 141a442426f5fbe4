import { randomFillSync } from 'node:crypto'
import v8 from 'node:v8'
import { CacheErrors } from './errors.js'

/** What is stored in Redis for one key: the value, its grace period and the tag generations it was built under. */
export interface Envelope {
  v: unknown
  /** Grace in ms: the Redis TTL is the fresh TTL plus this. */
  g: number
  t?: Record<string, number>
}

// Layout: 0xca, kind, a 16-byte write id, then the envelope. The kind names the codec that wrote it: 0 a tombstone
// (no envelope), 1 V8's structured clone, 2 JSON text (UTF-8). Entries of kind 1 are what every earlier version
// wrote, so they stay readable; a version that knows only kind 1 reads kind 2 as a miss, never as an error.
// The first 18 bytes are the entry's state token: fills compare it in Redis before writing (see redis-tier.ts).
const MAGIC = 0xca
const TOMB = 0x00
const V8 = 0x01
const JSON_TEXT = 0x02
export const TOKEN_BYTES = 18

/** What a value needs: JSON text keeps it as it is, only V8 keeps it, or nothing does. */
const PLAIN = 0
const NEEDS_V8 = 1
const REFUSED = 2

/**
 * Values JSON round-trips exactly go out as JSON text, whose parse is about twice as fast as V8's deserializer on
 * the same value. Anything JSON would change (Date, BigInt, Map, Set, Buffer and typed arrays, undefined, NaN,
 * Infinity, -0, holes, an object reached twice) goes through V8's structured clone, which keeps it. The walk is
 * the one that refuses what neither keeps, so choosing costs no extra pass.
 */
function needs (value: unknown, seen: Set<object>): number {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return PLAIN
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0) ? PLAIN : NEEDS_V8
    case 'bigint':
    case 'undefined':
      return NEEDS_V8
    case 'object':
      break
    default:
      return REFUSED
  }
  if (value === null) return PLAIN
  // JSON would copy a shared object and throw on a cycle; V8 keeps both.
  if (seen.has(value)) return NEEDS_V8
  seen.add(value)
  let need = PLAIN
  if (Array.isArray(value)) {
    // A hole reads as undefined, so it asks for V8 like an undefined element.
    for (let i = 0; i < value.length && need !== REFUSED; i++) need = Math.max(need, needs(value[i], seen))
    return need
  }
  if (value instanceof Date || ArrayBuffer.isView(value)) return NEEDS_V8
  if (value instanceof Map) {
    for (const [k, v] of value) if (Math.max(needs(k, seen), needs(v, seen)) === REFUSED) return REFUSED
    return NEEDS_V8
  }
  if (value instanceof Set) {
    for (const item of value) if (needs(item, seen) === REFUSED) return REFUSED
    return NEEDS_V8
  }
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return REFUSED
  const record = value as Record<string, unknown>
  for (const key of Object.keys(record)) {
    need = Math.max(need, needs(record[key], seen))
    if (need === REFUSED) return REFUSED
  }
  return need
}

/**
 * Throws CACHE_UNSUPPORTED_VALUE, naming where, for anything that would come back changed: class instances lose
 * their prototype, functions and symbols cannot be stored at all.
 */
function assertSerializable (value: unknown, path = 'value', seen = new Set<object>()): void {
  if (value === null || value === undefined) return
  const type = typeof value
  if (type === 'string' || type === 'number' || type === 'boolean' || type === 'bigint') return
  if (type !== 'object') throw new CacheErrors.CACHE_UNSUPPORTED_VALUE(`${path} is a ${type}`)
  const object = value as object
  if (seen.has(object)) return
  seen.add(object)
  if (object instanceof Date || ArrayBuffer.isView(object)) return
  if (Array.isArray(object)) {
    object.forEach((item, i) => assertSerializable(item, `${path}[${i}]`, seen))
    return
  }
  if (object instanceof Map) {
    for (const [k, v] of object) {
      assertSerializable(k, `${path}<key>`, seen)
      assertSerializable(v, `${path}<${String(k)}>`, seen)
    }
    return
  }
  if (object instanceof Set) {
    for (const item of object) assertSerializable(item, `${path}<item>`, seen)
    return
  }
  const proto: unknown = Object.getPrototypeOf(object)
  if (proto !== Object.prototype && proto !== null) {
    throw new CacheErrors.CACHE_UNSUPPORTED_VALUE(`${path} is an instance of ${(object.constructor as { name?: string } | undefined)?.name ?? 'a class'}`)
  }
  for (const [k, v] of Object.entries(object)) assertSerializable(v, `${path}.${k}`, seen)
}

function header (target: Buffer, kind: number): Buffer {
  target[0] = MAGIC
  target[1] = kind
  randomFillSync(target, 2, TOKEN_BYTES - 2)
  return target
}

export function encode (envelope: Envelope): Buffer {
  const need = needs(envelope.v, new Set())
  if (need === REFUSED) assertSerializable(envelope.v)
  if (need !== PLAIN) {
    const body = v8.serialize(envelope)
    return Buffer.concat([header(Buffer.allocUnsafe(TOKEN_BYTES), V8), body], TOKEN_BYTES + body.length)
  }
  const text = JSON.stringify(envelope)
  const bytes = Buffer.allocUnsafe(TOKEN_BYTES + Buffer.byteLength(text))
  bytes.write(text, TOKEN_BYTES)
  return header(bytes, JSON_TEXT)
}

/**
 * The envelope, or undefined for a tombstone or for bytes this version cannot read (an unknown kind, a truncated
 * or corrupted body): all of them are misses, never errors.
 */
export function decode (bytes: Buffer): Envelope | undefined {
  if (bytes.length <= TOKEN_BYTES || bytes[0] !== MAGIC) return undefined
  let envelope: Envelope
  try {
    if (bytes[1] === JSON_TEXT) envelope = JSON.parse(bytes.toString('utf8', TOKEN_BYTES)) as Envelope
    else if (bytes[1] === V8) envelope = v8.deserialize(bytes.subarray(TOKEN_BYTES)) as Envelope
    else return undefined
  } catch {
    return undefined
  }
  return typeof envelope === 'object' && envelope !== null && typeof envelope.g === 'number' ? envelope : undefined
}

/** A tombstone marks a deleted key, so that a fill that read the key before the delete cannot write old data back. */
export function tombstone (): Buffer {
  return header(Buffer.allocUnsafe(TOKEN_BYTES), TOMB)
}

/** The state token of what a read saw: the first bytes of the stored entry, or empty for no entry. */
export function stateToken (bytes: Buffer | undefined): Buffer {
  return bytes === undefined ? Buffer.alloc(0) : bytes.subarray(0, TOKEN_BYTES)
}
