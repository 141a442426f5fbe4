import type { FastifySchemaValidationError } from 'fastify'
import type { SchemaErrorDataVar } from 'fastify/types/schema.js'
import { formatSchemaErrors } from '@lead-chassis/plugins/chassis'
import { PHONE_PATTERN, PHONE_RULE, TEXT_PATTERN } from './lead-schemas.js'

/**
 * The chassis's schema error messages, with the free-text and phone rules said in words instead of their regular expressions,
 * for the routes whose body is a lead. The value is never quoted.
 */
export function leadSchemaErrors (errors: FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): Error {
  const patternOf = (e: FastifySchemaValidationError): string | undefined => e.keyword === 'pattern' ? (e.params as { pattern?: string }).pattern : undefined
  const text = errors.filter((e) => patternOf(e) === TEXT_PATTERN || patternOf(e) === PHONE_PATTERN)
  const others = errors.filter((e) => !text.includes(e))
  const parts = text.map((e) => `${dataVar}${e.instancePath} ${patternOf(e) === PHONE_PATTERN ? PHONE_RULE : 'must not be blank nor contain control characters (NUL, line breaks, tabs)'}`)
  if (others.length > 0) parts.push(formatSchemaErrors(others, dataVar).message)
  return new Error(parts.join('; '))
}
