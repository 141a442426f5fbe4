import type { FromSchema } from 'json-schema-to-ts'

export const PRODUCTS = ['auto', 'home', 'life', 'health', 'commercial'] as const
export const STATUSES = ['new', 'contacted', 'qualified', 'converted', 'lost'] as const
export const US_STATES = [
  'AL', 'AK', 'AZ', 'AR', 'CA', 'CO', 'CT', 'DE', 'DC', 'FL', 'GA', 'HI', 'ID', 'IL', 'IN', 'IA', 'KS', 'KY', 'LA', 'ME',
  'MD', 'MA', 'MI', 'MN', 'MS', 'MO', 'MT', 'NE', 'NV', 'NH', 'NJ', 'NM', 'NY', 'NC', 'ND', 'OH', 'OK', 'OR', 'PA', 'RI',
  'SC', 'SD', 'TN', 'TX', 'UT', 'VT', 'VA', 'WA', 'WV', 'WI', 'WY'
] as const
const SORTS = ['-createdAt', 'createdAt', '-score', 'score'] as const


/**
 * Free text refuses control characters (NUL, line breaks, tabs, DEL, C1) and unpaired surrogates: PostgreSQL refuses
 * NUL in text, and a line break would split a record of an import file. An unpaired surrogate is refused first, and
 * named as such, by the chassis's `wellFormed` keyword, which every stored text field carries. A name must show
 * something: a value of only spaces (any \p{Z} too), format characters (\p{Cf}: zero-width space and joiners, BOM,
 * direction marks), other default-ignorable code points (soft hyphen, Hangul fillers) and lone combining marks is blank.
 */
export const TEXT_PATTERN = '^(?![\\s\\p{Z}\\p{Cf}\\p{M}\\p{DI}]*$)[^\\p{Cc}\\p{Cs}]+$'
/** A phone: 7 to 20 characters, digits, spaces and + ( ) . -, at least 7 of them digits (`-------` is no number). */
export const PHONE_PATTERN = '^(?=(?:\\D*\\d){7})\\+?[0-9 ().-]{7,20}$'
/** The phone rule in words, for a validation message: the pattern itself says little to a caller. */
export const PHONE_RULE = 'must be a phone number: at least 7 digits, with spaces and + ( ) . - allowed, 7 to 20 characters'
const name = { type: 'string', wellFormed: true, minLength: 1, maxLength: 100, pattern: TEXT_PATTERN } as const
const fields = {
  firstName: name,
  lastName: name,
  email: { type: 'string', wellFormed: true, format: 'email', maxLength: 254 },
  phone: { type: ['string', 'null'], wellFormed: true, pattern: PHONE_PATTERN },
  product: { type: 'string', enum: PRODUCTS },
  state: { type: 'string', enum: US_STATES },
  source: { type: 'string', wellFormed: true, minLength: 1, maxLength: 64, pattern: '^[a-z0-9_.:-]+$' },
  score: { type: 'integer', minimum: 0, maximum: 100 }
} as const

export const createLeadBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['firstName', 'lastName', 'email', 'product', 'state'],
  properties: fields
} as const

export const patchLeadBodySchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { ...fields, status: { type: 'string', enum: STATUSES } }
} as const

export const leadIdParamsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', format: 'uuid' } }
} as const

export const listLeadsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: STATUSES },
    product: { type: 'string', enum: PRODUCTS },
    state: { type: 'string', enum: US_STATES },
    minScore: { type: 'integer', minimum: 0, maximum: 100 },
    sort: { type: 'string', enum: SORTS, default: '-createdAt' },
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    cursor: { type: 'string', minLength: 1, maxLength: 512, pattern: '^[A-Za-z0-9_-]+$' }
  }
} as const

export const pageQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    cursor: { type: 'string', minLength: 1, maxLength: 512, pattern: '^[A-Za-z0-9_-]+$' }
  }
} as const

export const leadSchema = {
  type: 'object',
  required: ['id', 'firstName', 'lastName', 'email', 'phone', 'product', 'state', 'status', 'score', 'source', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'string' },
    firstName: { type: 'string' },
    lastName: { type: 'string' },
    email: { type: 'string' },
    phone: { type: ['string', 'null'] },
    product: { type: 'string', enum: PRODUCTS },
    state: { type: 'string', enum: US_STATES },
    status: { type: 'string', enum: STATUSES },
    score: { type: 'integer' },
    source: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' }
  }
} as const

export const leadPageSchema = {
  type: 'object',
  required: ['data', 'nextCursor'],
  properties: { data: { type: 'array', items: leadSchema }, nextCursor: { type: ['string', 'null'] } }
} as const

const activitySchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    leadId: { type: 'string' },
    type: { type: 'string' },
    details: { type: 'object', additionalProperties: true },
    actor: { type: ['string', 'null'] },
    createdAt: { type: 'string', format: 'date-time' }
  }
} as const

export const activityPageSchema = {
  type: 'object',
  required: ['data', 'nextCursor'],
  properties: { data: { type: 'array', items: activitySchema }, nextCursor: { type: ['string', 'null'] } }
} as const

/**
 * How the shapes below are read as TypeScript types: a `date-time` string is a Date in the code (the repositories
 * return Dates; the serializer writes them as ISO strings).
 */
export interface LeadSchemaOptions {
  deserialize: [{ pattern: { type: 'string', format: 'date-time' }, output: Date }]
}

/**
 * The declared properties only: a response schema leaves additionalProperties open (the serializer writes only what
 * it declares), which json-schema-to-ts reads as an index signature of unknowns.
 */
type Declared<T> = { [K in keyof T as string extends K ? never : K]: T[K] }

/** A lead as the repositories return it and the routes answer it. */
export type Lead = Declared<FromSchema<typeof leadSchema, LeadSchemaOptions>>
/** What creating a lead takes. */
export type LeadInput = FromSchema<typeof createLeadBodySchema>
/** What a change to a lead takes: any of the input's fields and the status. */
export type LeadPatch = FromSchema<typeof patchLeadBodySchema>
/** One entry of a lead's activity trail; the repository always gives every field. */
export type LeadActivity = Required<Declared<FromSchema<typeof activitySchema, LeadSchemaOptions>>>
/** A list's filters, order and page, with the defaults applied by validation. */
export type LeadListQuery = FromSchema<typeof listLeadsQuerySchema>
