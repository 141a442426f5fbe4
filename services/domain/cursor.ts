import type { FastifyError } from 'fastify'
import { LeadErrors } from './errors.js'

/** Keyset position: the sort it belongs to, the sort column's value and the row id that breaks ties. */
export interface Cursor {
  sort: string
  value: string | number
  id: string
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
// The text the repository selects for created_at: UTC, always six fractional digits.
const TIMESTAMP = /^(\d{4,6})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/
const BIGINT_MAX = 9223372036854775807n

function isRealTimestamp (value: unknown): boolean {
  if (typeof value !== 'string') return false
  const m = TIMESTAMP.exec(value)
  if (!m) return false
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number]
  const date = new Date(0)
  // An impossible day or hour (Feb 30, 24:00) rolls into the next; a real one reads back unchanged.
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second)
  return year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day &&
    date.getUTCHours() === hour && date.getUTCMinutes() === minute && date.getUTCSeconds() === second
}

const isScore = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 100
const isUuid = (id: unknown): boolean => typeof id === 'string' && UUID.test(id)
const isActivityId = (id: unknown): boolean => typeof id === 'string' && /^\d{1,19}$/.test(id) && BigInt(id) <= BIGINT_MAX

/**
 * What each sort's cursor holds, checked field by field so that no forged value reaches the `::integer`,
 * `::timestamptz`, `::uuid` or `::bigint` casts of the query (where it would fail as DB_INVALID_INPUT, or worse, run).
 * A score is the column's range (0-100); an activity cursor carries no value (0) and the activity's bigint id.
 */
const SHAPES: Record<string, { value: (v: unknown) => boolean, id: (id: unknown) => boolean }> = {
  createdAt: { value: isRealTimestamp, id: isUuid },
  '-createdAt': { value: isRealTimestamp, id: isUuid },
  score: { value: isScore, id: isUuid },
  '-score': { value: isScore, id: isUuid },
  activities: { value: (v) => v === 0, id: isActivityId }
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
  const shape = SHAPES[sort]
  if (!shape || !shape.value(value) || !shape.id(id)) throw invalidCursor()
  return { sort: s, value: value as string | number, id: id as string }
}

function invalidCursor (): FastifyError {
  return new LeadErrors.INVALID_CURSOR('is not a valid cursor')
}
