import type { FastifyError } from 'fastify'
import { LeadErrors } from './errors.js'

/** Keyset position: the sort it belongs to, the sort column's value and the row id that breaks ties. */
export interface Cursor {
  sort: string
  value: string | number
  id: string
}

export function encodeCursor (cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.sort, cursor.value, cursor.id])).toString('base64url')
}

/** Decodes a cursor made by `encodeCursor` for the same sort; anything else is a 400. */
export function decodeCursor (text: string, sort: string): Cursor {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    parsed = undefined
  }
  if (!Array.isArray(parsed) || parsed.length !== 3) throw invalidCursor()
  const [s, value, id] = parsed as unknown[]
  if (s !== sort) throw new LeadErrors.INVALID_CURSOR('belongs to another sort order')
  if ((typeof value !== 'string' && typeof value !== 'number') || typeof id !== 'string') throw invalidCursor()
  return { sort: s, value, id }
}

export function invalidCursor (): FastifyError {
  return new LeadErrors.INVALID_CURSOR('is not a valid cursor')
}
