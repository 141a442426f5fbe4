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

/** An entry as read: its envelope and, for entries that carry it, its logical expiry (writer's clock, epoch ms). */
export interface Decoded extends Envelope {
  /** Fresh until this instant; absent in entries of kinds 1 and 2, whose remaining TTL Redis must be asked for. */
  freshUntil?: number
  /** Served as stale-if-error until this instant (freshUntil plus the grace period). */
  graceUntil?: number
}

// Layout: 0xca, kind, a 16-byte write id, then for kinds 3 and 4 the fresh-until and grace-until instants (two
// float64 LE, epoch ms), then the envelope. The kind names the codec that wrote it: 0 a tombstone (no envelope),
// 1 V8's structured clone, 2 JSON text (UTF-8), 3 and 4 the same as 2 and 1 with the logical expiry, so a hit
// needs no PTTL. Every kind an earlier version wrote stays readable; a version that does not know a kind reads it
// as a miss, never as an error (the versions that wrote 1 and 2 read only those).
// The first 18 bytes are the entry's state token: fills compare it in Redis before writing (see redis-tier.ts).
const MAGIC = 0xca
const TOMB = 0x00
const V8 = 0x01
const JSON_TEXT = 0x02
const JSON_TIMED = 0x03
const V8_TIMED = 0x04
export const TOKEN_BYTES = 18
const TIMED_BYTES = TOKEN_BYTES + 16

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

// Write ids are cut from a pool of random bytes, refilled every 256 ids, as crypto.randomUUID buffers its own:
// randomFillSync per id made every fill and tombstone pay a call into OpenSSL and a getpid system call.
const ID_BYTES = TOKEN_BYTES - 2
const idPool = Buffer.allocUnsafe(ID_BYTES * 256)
let idPoolOffset = idPool.length

function header (target: Buffer, kind: number): Buffer {
  target[0] = MAGIC
  target[1] = kind
  if (idPoolOffset === idPool.length) {
    randomFillSync(idPool)
    idPoolOffset = 0
  }
  idPool.copy(target, 2, idPoolOffset, idPoolOffset + ID_BYTES)
  idPoolOffset += ID_BYTES
  return target
}

/**
 * With `ttlMs`, the entry carries its logical expiry: fresh for `ttlMs` from now (this instance's clock), then
 * `envelope.g` of grace. Without it, the kinds earlier versions wrote (1 or 2), whose reader asks Redis for the TTL.
 */
export function encode (envelope: Envelope, ttlMs?: number): Buffer {
  const need = needs(envelope.v, new Set())
  if (need === REFUSED) assertSerializable(envelope.v)
  const timed = ttlMs !== undefined
  const start = timed ? TIMED_BYTES : TOKEN_BYTES
  let bytes: Buffer
  if (need !== PLAIN) {
    const body = v8.serialize(envelope)
    bytes = Buffer.concat([header(Buffer.allocUnsafe(start), timed ? V8_TIMED : V8), body], start + body.length)
  } else {
    const text = JSON.stringify(envelope)
    bytes = header(Buffer.allocUnsafe(start + Buffer.byteLength(text)), timed ? JSON_TIMED : JSON_TEXT)
    bytes.write(text, start)
  }
  if (timed) {
    const freshUntil = Date.now() + ttlMs
    bytes.writeDoubleLE(freshUntil, TOKEN_BYTES)
    bytes.writeDoubleLE(freshUntil + envelope.g, TOKEN_BYTES + 8)
  }
  return bytes
}

/** True for an entry without its logical expiry (kinds 1 and 2): its reader needs Redis's PTTL. */
export function needsTtl (bytes: Buffer): boolean {
  return bytes[0] === MAGIC && (bytes[1] === JSON_TEXT || bytes[1] === V8)
}

/**
 * The envelope, or undefined for a tombstone or for bytes this version cannot read (an unknown kind, a truncated
 * or corrupted body): all of them are misses, never errors.
 */
export function decode (bytes: Buffer): Decoded | undefined {
  if (bytes.length <= TOKEN_BYTES || bytes[0] !== MAGIC) return undefined
  const kind = bytes[1]
  const timed = kind === JSON_TIMED || kind === V8_TIMED
  if (timed && bytes.length <= TIMED_BYTES) return undefined
  let envelope: Decoded
  try {
    if (kind === JSON_TEXT || kind === JSON_TIMED) envelope = JSON.parse(bytes.toString('utf8', timed ? TIMED_BYTES : TOKEN_BYTES)) as Decoded
    else if (kind === V8 || kind === V8_TIMED) envelope = v8.deserialize(bytes.subarray(timed ? TIMED_BYTES : TOKEN_BYTES)) as Decoded
    else return undefined
  } catch {
    return undefined
  }
  if (typeof envelope !== 'object' || envelope === null || typeof envelope.g !== 'number') return undefined
  // Tags, when present, are a name-to-generation record: anything else (`"t": null` from a foreign or corrupted
  // writer) is a corrupt entry, a miss, not a TypeError in the read that meets it.
  const t: unknown = envelope.t
  if (t !== undefined && (typeof t !== 'object' || t === null || Array.isArray(t) || !Object.values(t).every((gen) => typeof gen === 'number'))) return undefined
  if (timed) {
    const freshUntil = bytes.readDoubleLE(TOKEN_BYTES)
    const graceUntil = bytes.readDoubleLE(TOKEN_BYTES + 8)
    if (!Number.isFinite(freshUntil) || !(graceUntil >= freshUntil)) return undefined
    envelope.freshUntil = freshUntil
    envelope.graceUntil = graceUntil
  }
  return envelope
}

/** A tombstone marks a deleted key, so that a fill that read the key before the delete cannot write old data back. */
export function tombstone (): Buffer {
  return header(Buffer.allocUnsafe(TOKEN_BYTES), TOMB)
}

/** The state token of what a read saw: the first bytes of the stored entry, or empty for no entry. */
export function stateToken (bytes: Buffer | undefined): Buffer {
  return bytes === undefined ? Buffer.alloc(0) : bytes.subarray(0, TOKEN_BYTES)
}
