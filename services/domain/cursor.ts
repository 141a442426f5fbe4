import { HttpError } from '@lead-chassis/plugins/chassis'

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
  if (!Array.isArray(parsed) || parsed.length !== 3) throw invalid()
  const [s, value, id] = parsed as unknown[]
  if (s !== sort) throw new HttpError(400, 'INVALID_CURSOR', 'querystring/cursor belongs to another sort order')
  if ((typeof value !== 'string' && typeof value !== 'number') || typeof id !== 'string') throw invalid()
  return { sort: s, value, id }
}

function invalid (): HttpError {
  return new HttpError(400, 'INVALID_CURSOR', 'querystring/cursor is not a valid cursor')
}
