import { Ajv, type AnySchemaObject, type ErrorObject } from 'ajv'
import type { SchemaValidateFunction } from 'ajv/dist/types/index.js'
import envSchema from 'env-schema'
import type { FromSchema } from 'json-schema-to-ts'
import { ChassisErrors } from './errors.js'

export type ConfigValue = string | number | boolean

/** One environment variable: its JSON-schema type, default and a one-line meaning. */
export interface ConfigProperty {
  type: 'string' | 'integer' | 'number' | 'boolean'
  description: string
  default?: ConfigValue
  minimum?: number
  maximum?: number
  /**
   * `ms` for a duration in milliseconds whose name does not end in `_MS`: like those, it is refused above
   * MAX_TIMER_MS.
   */
  unit?: 'ms'
  enum?: readonly ConfigValue[]
  /** A named format: `postgres-url`, `redis-url` or `cidr-list`. */
  format?: 'postgres-url' | 'redis-url'
  /**
   * Name of another integer variable this one must not exceed. Set above it, this one is refused; unset, its default
   * is lowered to it, so that a default never stops a service whose set values are fine.
   */
  maxOf?: string
  /** Name of another integer variable this one must stay below. */
  lessThan?: string
  /** A regular expression the value must match, with the message shown when it does not. */
  pattern?: string
  patternMessage?: string
  /**
   * A mistake worth its own message: a value matching `pattern` here is refused with `message` (`pattern` above then
   * has to accept it, or both messages are given). Several are tried in order; the first that matches is given.
   */
  refusedPattern?: RefusedPattern | readonly RefusedPattern[]
}

/** A value a config property refuses with a message of its own. */
export interface RefusedPattern { readonly pattern: string, readonly message: string }

/** The variables one plugin or service reads. */
export interface ConfigFragment {
  properties: Record<string, ConfigProperty>
  required?: readonly string[]
}

/**
 * The values loadConfig gives for a fragment (declared `as const`), derived from its schema: a variable with a default
 * or listed in `required` is always there, any other may be undefined.
 */
export type ConfigOf<F extends ConfigFragment> = FromSchema<{
  type: 'object'
  properties: F['properties']
  required: F['required'] extends readonly string[] ? F['required'] : []
  additionalProperties: false
}>

export interface ConfigSchema {
  type: 'object'
  properties: Record<string, ConfigProperty>
  required: string[]
}

/** Merges fragments into one schema; a variable declared twice keeps the later declaration. */
export function composeSchema (...fragments: ConfigFragment[]): ConfigSchema {
  const properties: Record<string, ConfigProperty> = {}
  const required = new Set<string>()
  for (const fragment of fragments) {
    Object.assign(properties, fragment.properties)
    for (const name of fragment.required ?? []) required.add(name)
  }
  return { type: 'object', properties, required: [...required] }
}

function isUrlWithProtocol (protocols: string[]) {
  return (text: string): boolean => {
    try {
      return protocols.includes(new URL(text).protocol)
    } catch {
      return false
    }
  }
}

const FORMAT_MESSAGES: Record<string, string> = {
  'postgres-url': 'must be a postgres:// or postgresql:// URL',
  'redis-url': 'must be a redis:// or rediss:// URL'
}

function createAjv (): Ajv {
  const ajv = new Ajv({ verbose: true, allErrors: true, removeAdditional: true, useDefaults: true, coerceTypes: true, allowUnionTypes: true })
  ajv.addFormat('postgres-url', isUrlWithProtocol(['postgres:', 'postgresql:']))
  ajv.addFormat('redis-url', isUrlWithProtocol(['redis:', 'rediss:']))
  addComparison(ajv, 'maxOf', (value, other) => value <= other, 'must not exceed', '>', (_value, other) => other)
  addComparison(ajv, 'lessThan', (value, other) => value < other, 'must be less than', '>=')
  ajv.addKeyword({ keyword: 'patternMessage' })
  ajv.addKeyword({ keyword: 'unit' })
  ajv.addKeyword({ keyword: 'refusedPattern', type: 'string', errors: true, validate: checkRefusedPattern })
  ajv.addKeyword({ keyword: 'valuesAsWritten', modifying: true, errors: true, validate: checkValuesAsWritten })
  return ajv
}

const checkRefusedPattern: SchemaValidateFunction = (schema: RefusedPattern | readonly RefusedPattern[], data: unknown) => {
  if (typeof data !== 'string') return true
  const refused = (Array.isArray(schema) ? schema as readonly RefusedPattern[] : [schema as RefusedPattern]).find((r) => new RegExp(r.pattern, 'u').test(data))
  if (refused === undefined) return true
  checkRefusedPattern.errors = [{ keyword: 'refusedPattern', message: refused.message, params: {} }]
  return false
}

const INTEGER = /^[+-]?\d+$/
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/

/**
 * Runs on the whole environment before any variable is coerced: Ajv reads a blank string as 0 and hex or exponent
 * notation as numbers, so `PORT= ` would listen on a port the system picks. An empty number, boolean or choice (an
 * enum without '') is unset (its default applies); spaces around a number or boolean are dropped, as an env file often
 * carries them; a blank one, or a number in another notation, is refused, and dropped so no other rule reports it
 * again. Other strings are kept as written: an empty one is a value (an empty SERVICE_API_KEY disables it).
 */
const checkValuesAsWritten: SchemaValidateFunction = (_schema: boolean, data: unknown, parent?: AnySchemaObject) => {
  if (typeof data !== 'object' || data === null) return true
  const values = data as Record<string, unknown>
  const properties = (parent?.properties ?? {}) as Record<string, ConfigProperty>
  const errors: Array<Partial<ErrorObject>> = []
  for (const [name, property] of Object.entries(properties)) {
    const value = values[name]
    if (typeof value !== 'string') continue
    const choice = property.type === 'string' && property.enum !== undefined && !property.enum.includes('')
    if (value === '' && (property.type !== 'string' || choice)) {
      // Unset, so its default applies.
      delete values[name]
      continue
    }
    if (property.type === 'string') continue
    const written = value.trim()
    const integer = property.type === 'integer'
    const kind = property.type === 'boolean' ? 'true or false' : integer ? 'an integer' : 'a number'
    if (written !== '' && (property.type === 'boolean' || (integer ? INTEGER : DECIMAL).test(written))) {
      values[name] = written
      continue
    }
    const unset = property.default === undefined ? 'to leave it unset' : `for its default (${String(property.default)})`
    const message = written === ''
      ? `is blank: give ${kind}, or leave it empty ${unset}`
      : integer ? 'must be integer, in decimal digits' : 'must be number, in decimal notation'
    errors.push({ instancePath: `/${name}`, keyword: 'valuesAsWritten', message, params: {} })
    // Reported here: coerced, it would pass or be reported twice.
    delete values[name]
  }
  // What is left was set: the defaults are not filled in yet.
  setInEnvironment.set(values, new Set(Object.keys(values)))
  checkValuesAsWritten.errors = errors
  return errors.length === 0
}

/** The variables given a value, by the environment validated. */
const setInEnvironment = new WeakMap<object, Set<string>>()

/**
 * A keyword naming another variable a number is compared with: `holds` when the pair is fine. With `adjust`, a
 * variable left unset whose default does not hold takes `adjust`'s value instead of being refused.
 */
function addComparison (ajv: Ajv, keyword: string, holds: (value: number, other: number) => boolean, rule: string, sign: string, adjust?: (value: number, other: number) => number): void {
  const validate: SchemaValidateFunction = (schema: string, data: unknown, _parent?: AnySchemaObject, ctx?) => {
    const root = ctx?.rootData as Record<string, unknown> | undefined
    // The other variable is a number as written or absent (checkValuesAsWritten ran first): absent, NaN, is skipped.
    const other = Number(root?.[schema])
    if (!Number.isFinite(other) || typeof data !== 'number' || holds(data, other)) return true
    const name = ctx?.parentDataProperty
    if (adjust !== undefined && root !== undefined && ctx?.parentData === root && typeof name === 'string' && setInEnvironment.get(root)?.has(name) === false) {
      root[name] = adjust(data, other)
      return true
    }
    validate.errors = [{ keyword, message: `${rule} ${schema} (${data} ${sign} ${other})`, params: {} }]
    return false
  }
  ajv.addKeyword({ keyword, type: 'number', modifying: true, errors: true, validate })
}

/**
 * The longest delay Node.js timers keep: a longer one fires after 1 ms (a TimeoutOverflowWarning), so a shutdown
 * timeout of 2^31 ms would force the exit at once and a health-check budget as long would fail every check.
 */
export const MAX_TIMER_MS = 2147483647

/**
 * Every millisecond setting (named `*_MS`, or declared `unit: 'ms'`) is refused above MAX_TIMER_MS, and every other
 * integer above Number.MAX_SAFE_INTEGER (past it, `1e25` and its neighbours are read as the same number); a declared
 * maximum that is lower stays.
 */
function withCeilings (properties: Record<string, ConfigProperty>): Record<string, ConfigProperty> {
  const bounded: Record<string, ConfigProperty> = {}
  for (const [name, property] of Object.entries(properties)) {
    const milliseconds = property.unit === 'ms' || name.endsWith('_MS')
    const ceiling = milliseconds ? MAX_TIMER_MS : property.type === 'integer' ? Number.MAX_SAFE_INTEGER : undefined
    bounded[name] = ceiling === undefined || property.type === 'string' || property.type === 'boolean'
      ? property
      : { ...property, maximum: Math.min(property.maximum ?? ceiling, ceiling) }
  }
  return bounded
}

function describe (error: ErrorObject): string {
  const name = error.instancePath.replace(/^\//, '')
  if (error.keyword === 'required') return `${String(error.params.missingProperty)} is required`
  if (error.keyword === 'format') return `${name} ${FORMAT_MESSAGES[String(error.params.format)] ?? error.message ?? 'is invalid'}`
  if (error.keyword === 'pattern') return `${name} ${(error.parentSchema as { patternMessage?: string } | undefined)?.patternMessage ?? error.message ?? 'is invalid'}`
  if (error.keyword === 'maximum') return `${name} must be at most ${String(error.params.limit)}`
  if (error.keyword === 'enum') return `${name} must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`
  return `${name} ${error.message ?? 'is invalid'}`
}

export interface LoadConfigOptions {
  /** Variables to read; defaults to `process.env`. */
  env?: Record<string, string | undefined>
  /** Read an optional `.env` file (or the given path) under the variables. @default true */
  dotenv?: boolean | string
}

/**
 * Validates the environment against a composed schema, once, at start.
 * Every problem is named in one CHASSIS_CONFIG_INVALID error; values are never echoed, so secrets in URLs stay out of logs.
 */
export function loadConfig<T> (schema: ConfigSchema, options: LoadConfigOptions = {}): Readonly<T> {
  const dotenv = options.dotenv ?? true
  try {
    const values = envSchema({
      schema: { ...structuredClone(schema), properties: withCeilings(structuredClone(schema.properties)), valuesAsWritten: true },
      data: { ...(options.env ?? process.env) },
      env: false,
      dotenv: dotenv === false ? false : typeof dotenv === 'string' ? { path: dotenv } : true,
      ajv: createAjv()
    })
    return Object.freeze(values) as unknown as Readonly<T>
  } catch (error) {
    const problems = (error as { errors?: ErrorObject[] }).errors
    if (problems === undefined) throw error
    throw new ChassisErrors.CHASSIS_CONFIG_INVALID(problems.map(describe).join('; '))
  }
}
