import { _, type Ajv, type KeywordDefinition } from 'ajv'

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

/** The platform's schema rules on an Ajv instance: the `wellFormed` keyword. */
export function addSchemaRules (ajv: Ajv): Ajv {
  ajv.addKeyword(wellFormedKeyword)
  return ajv
}
