import createError from '@fastify/error'

/**
 * Every error code about leads that more than one service raises, keyed by its code; the HTTP body carries the same
 * `code`. A code only one service raises lives in that service's errors.ts.
 */
export const LeadErrors = {
  LEAD_NOT_FOUND: createError<'LEAD_NOT_FOUND', 404, [string]>('LEAD_NOT_FOUND', 'Lead %s not found', 404),
  LEAD_DUPLICATE: createError<'LEAD_DUPLICATE', 409, []>('LEAD_DUPLICATE', 'A lead with this email and product already exists', 409),
  /** The reason is `is not a valid cursor` or `belongs to another sort order`. */
  INVALID_CURSOR: createError<'INVALID_CURSOR', 400, [string]>('INVALID_CURSOR', 'querystring/cursor %s', 400)
} as const
