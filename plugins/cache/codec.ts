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

// Layout: 0xca, kind (1 value, 0 tombstone), a 16-byte write id, then the V8-serialized envelope.
// The first 18 bytes are the entry's state token: fills compare it in Redis before writing (see redis-tier.ts).
const MAGIC = 0xca
const VALUE = 0x01
const TOMB = 0x00
export const TOKEN_BYTES = 18

/**
 * Values are serialized with V8's structured clone, which keeps Date, BigInt, Map, Set, Buffer and typed arrays
 * intact. Anything it would silently change (class instances lose their prototype, functions throw late) is
 * refused up front with CACHE_UNSUPPORTED_VALUE.
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

function header (kind: number): Buffer {
  const head = Buffer.allocUnsafe(TOKEN_BYTES)
  head[0] = MAGIC
  head[1] = kind
  randomFillSync(head, 2)
  return head
}

export function encode (envelope: Envelope): Buffer {
  assertSerializable(envelope.v)
  return Buffer.concat([header(VALUE), v8.serialize(envelope)])
}

/** The envelope, or undefined for a tombstone or for bytes this version cannot read (both are misses). */
export function decode (bytes: Buffer): Envelope | undefined {
  if (bytes.length <= TOKEN_BYTES || bytes[0] !== MAGIC || bytes[1] !== VALUE) return undefined
  try {
    return v8.deserialize(bytes.subarray(TOKEN_BYTES)) as Envelope
  } catch {
    return undefined
  }
}

/** A tombstone marks a deleted key, so that a fill that read the key before the delete cannot write old data back. */
export function tombstone (): Buffer {
  return header(TOMB)
}

/** The state token of what a read saw: the first bytes of the stored entry, or empty for no entry. */
export function stateToken (bytes: Buffer | undefined): Buffer {
  return bytes === undefined ? Buffer.alloc(0) : bytes.subarray(0, TOKEN_BYTES)
}
