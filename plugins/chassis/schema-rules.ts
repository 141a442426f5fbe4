import { _, type Ajv, type FormatDefinition, type KeywordDefinition } from 'ajv'
import { fullFormats } from 'ajv-formats/dist/formats.js'

/**
 * What the `wellFormed` keyword answers: a lone UTF-16 surrogate (`"\ud800"` in JSON) is no character, and
 * PostgreSQL cannot hold it (its driver writes U+FFFD in its place, jsonb refuses the escape).
 */
export const NOT_WELL_FORMED = 'must be valid Unicode: it holds an unpaired UTF-16 surrogate (\\ud800 to \\udfff), which is no character'

/**
 * `wellFormed: true` on a string schema refuses a string holding a lone surrogate. It runs before the string's other
 * keywords, so a pattern or format never reports it as something else (a control character, a bad email).
 */
export const wellFormedKeyword: KeywordDefinition = {
  keyword: 'wellFormed',
  type: 'string',
  schemaType: 'boolean',
  before: 'maxLength',
  error: { message: NOT_WELL_FORMED },
  code (cxt) {
    if (cxt.schema === true) cxt.fail(_`!${cxt.data}.isWellFormed()`)
  }
}

/** The earliest day every store of the platform can hold: PostgreSQL has no year 0 (1 BC is followed by AD 1). */
export const EARLIEST_DATE = '0001-01-01'

type StringCheck = (value: string) => boolean

function narrowed (name: 'date' | 'date-time'): { definition: FormatDefinition<string>, validate: StringCheck } {
  const format = fullFormats[name] as FormatDefinition<string> & { validate: StringCheck }
  const rfc3339 = format.validate
  // RFC 3339's four-digit years end at 9999, within PostgreSQL's range and JavaScript's. Year 0000 is RFC 3339's and
  // JavaScript's but not PostgreSQL's, which refuses it as out of range (SQLSTATE 22008).
  const validate: StringCheck = (value) => rfc3339(value) && !value.startsWith('0000')
  return { definition: { ...format, validate }, validate }
}

const date = narrowed('date')
const dateTime = narrowed('date-time')

/** A day as `format: 'date'` accepts it: RFC 3339, on the calendar (no February 30th), 0001-01-01 to 9999-12-31. */
export const isStorableDate: StringCheck = date.validate
/** A time as `format: 'date-time'` accepts it: RFC 3339 with its time zone, its day as `isStorableDate` wants it. */
export const isStorableDateTime: StringCheck = dateTime.validate

/**
 * The platform's schema rules, on an Ajv instance that already has ajv-formats' formats (added after, they would
 * replace the dates): the `wellFormed` keyword, and `date` and `date-time` narrowed to the days PostgreSQL and
 * JavaScript both hold, so such a value is refused by validation, naming its field, and never by the database.
 */
export function addSchemaRules (ajv: Ajv): Ajv {
  ajv.addKeyword(wellFormedKeyword)
  ajv.addFormat('date', date.definition)
  ajv.addFormat('date-time', dateTime.definition)
  return ajv
}
