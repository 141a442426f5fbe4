import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * What one request (or one `freshReads` scope) has done to the primary, so that its reads on a replica see it:
 * `required` is the WAL position a replica must have replayed; `wrote` says a write happened since `required` was
 * last read from the primary (the position is read lazily, once, by the next read that needs it).
 */
export interface ReadContext {
  required: bigint
  wrote: boolean
  /** A write happened in this scope at all: the response carries the position. */
  wroteAny: boolean
  resolving?: Promise<void>
}

export const readContext = new AsyncLocalStorage<ReadContext>()

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/

/** A PostgreSQL LSN (`16/B374D848`) as a number; undefined when the text is not one. */
export function parseLsn (text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined
  const m = LSN.exec(text.trim())
  if (!m) return undefined
  return (BigInt(`0x${m[1] as string}`) << 32n) + BigInt(`0x${m[2] as string}`)
}

export function formatLsn (lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}

export function newReadContext (required = 0n): ReadContext {
  return { required, wrote: false, wroteAny: false }
}
