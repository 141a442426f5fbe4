import type { FastifyRequest } from 'fastify'
import { REDACTED, SECRET_QUERY_PARAMS, scrubUrl } from './redact.js'
import { routeContextOf } from './route-context.js'
import { isStorableDate, isStorableDateTime } from './schema-rules.js'

// A name or a phone cannot be told from an id or a filter value by its shape, so what a request's URL may show in a
// log line or a span is allowed, never detected: the route's static segments, and the values its schemas constrain
// to a shape that holds no name or phone (an enum or const, a bounded short number, a boolean, a uuid, a date).
// Everything else a caller put in the URL becomes `[REDACTED]`.

/** Whether `url.slice(start, end)` is a value of the shape a schema allows. Reads the URL in place: no slice. */
type Check = (url: string, start: number, end: number) => boolean

interface RouteShape {
  /** The pattern's segments: a static one's text, a parameter's check (null: never shown), WILDCARD; null: unmatched. */
  segments: Array<string | Check | null | typeof WILDCARD> | null
  /** The querystring schema's parameters, each with its check (null: declared, but free text). */
  query: Array<{ name: string, check: Check | null }>
}

const WILDCARD = Symbol('wildcard')
const UNMATCHED: RouteShape = Object.freeze({ segments: null, query: [] })

// Phones have at least seven digits: a number of six or fewer is shown (within the schema's bounds).
const MAX_NUMBER_DIGITS = 6
const UUID = /[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/y
const DATE = /\d{4}-\d{2}-\d{2}/y
// A second's fraction of at most three digits (milliseconds, as Date#toISOString writes them): the seconds and it hold
// five digits, fewer than a phone's seven (`10:00:55.51234` reads as 555-1234).
const DATE_TIME = /\d{4}-\d{2}-\d{2}[Tt]\d{2}(?::|%3[aA])\d{2}(?::|%3[aA])\d{2}(?:\.\d{1,3})?(?:[Zz]|(?:-|%2[bB])\d{2}(?::|%3[aA])\d{2})/y

function sticky (re: RegExp, length?: number): Check {
  return (url, start, end) => {
    if (length !== undefined && end - start !== length) return false
    re.lastIndex = start
    return re.test(url) && re.lastIndex === end
  }
}

const isUuid = sticky(UUID, 36)

// A value shaped like a date need not be one: `5551-23-45` is a phone's digits. Shown only when it is the date (or
// date-time) the schema's format accepts (schema-rules.ts): a real day of a real month.
const DATE_TIME_ESCAPES = /%3[aA]|%2[bB]/g
const unescapeDateTime = (escape: string): string => escape[1] === '3' ? ':' : '+'

const dateShaped = sticky(DATE, 10)
const dateTimeShaped = sticky(DATE_TIME)
const isDate: Check = (url, start, end) => dateShaped(url, start, end) && isStorableDate(url.slice(start, end))
const isDateTime: Check = (url, start, end) => dateTimeShaped(url, start, end) && isStorableDateTime(url.slice(start, end).replace(DATE_TIME_ESCAPES, unescapeDateTime))

function oneOf (values: unknown[]): Check | null {
  const allowed = values.filter((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean').map(String)
  if (allowed.length === 0) return null
  return (url, start, end) => {
    for (const value of allowed) if (value.length === end - start && url.startsWith(value, start)) return true
    return false
  }
}

function numberCheck (schema: Record<string, unknown>, integer: boolean): Check {
  const bound = (key: string): number | undefined => typeof schema[key] === 'number' ? schema[key] : undefined
  const min = bound('minimum')
  const max = bound('maximum')
  const exclusiveMin = bound('exclusiveMinimum')
  const exclusiveMax = bound('exclusiveMaximum')
  return (url, start, end) => {
    let at = start
    let negative = false
    if (url.charCodeAt(at) === 45) { negative = true; at++ }
    let digits = 0
    let value = 0
    let scale = 0
    for (; at < end; at++) {
      const c = url.charCodeAt(at)
      if (c >= 48 && c <= 57) {
        if (++digits > MAX_NUMBER_DIGITS) return false
        value = value * 10 + (c - 48)
        if (scale > 0) scale *= 10
      } else if (c === 46 && !integer && scale === 0 && digits > 0) {
        scale = 1
      } else {
        return false
      }
    }
    if (digits === 0 || scale === 1) return false
    if (scale > 0) value /= scale
    if (negative) value = -value
    return !(
      (min !== undefined && value < min) || (max !== undefined && value > max) ||
      (exclusiveMin !== undefined && value <= exclusiveMin) || (exclusiveMax !== undefined && value >= exclusiveMax)
    )
  }
}

function isTrue (url: string, start: number, end: number): boolean {
  const length = end - start
  return (length === 4 && url.startsWith('true', start)) || (length === 5 && url.startsWith('false', start))
}

/** The check of a value a property schema allows, or null when it allows free text (which may hold anything). */
function checkOf (schema: unknown): Check | null {
  if (schema === null || typeof schema !== 'object') return null
  const s = schema as Record<string, unknown>
  if (s.const !== undefined) return oneOf([s.const])
  if (Array.isArray(s.enum)) return oneOf(s.enum)
  const types = Array.isArray(s.type) ? s.type.filter((t) => t !== 'null') : [s.type]
  if (types.length !== 1) return null
  switch (types[0]) {
    case 'integer': return numberCheck(s, true)
    case 'number': return numberCheck(s, false)
    case 'boolean': return isTrue
    // `?status=new&status=lost` for an array of statuses: each occurrence is checked on its own.
    case 'array': return checkOf(s.items)
    case 'string':
      if (s.format === 'uuid') return isUuid
      if (s.format === 'date') return isDate
      if (s.format === 'date-time') return isDateTime
      return null
    default: return null
  }
}

function propertiesOf (schema: unknown): Record<string, unknown> {
  const properties = (schema as { properties?: unknown } | null | undefined)?.properties
  return properties !== null && typeof properties === 'object' ? properties as Record<string, unknown> : {}
}

const PARAM = /^:([A-Za-z0-9_]+)$/

function compile (pattern: string | undefined, schema: { params?: unknown, querystring?: unknown } | undefined): RouteShape {
  const query = Object.entries(propertiesOf(schema?.querystring)).map(([name, property]) => ({ name, check: checkOf(property) }))
  if (pattern === undefined) return query.length === 0 ? UNMATCHED : { segments: null, query }
  const params = propertiesOf(schema?.params)
  const segments = pattern.split('/').map((segment) => {
    if (segment === '*') return WILDCARD
    if (!segment.includes(':') && !segment.includes('*')) return segment
    // `:id`, checked by its schema; any other (`:a-:b`, `:id(^\\d+$)`, an escaped `::`) is never shown.
    const name = PARAM.exec(segment)?.[1]
    return name !== undefined && Object.hasOwn(params, name) ? checkOf(params[name]) : null
  })
  return { segments, query }
}

const shapes = new WeakMap<object, RouteShape>()

function shapeOf (request: FastifyRequest): RouteShape {
  // Anything else logged as a request (a plain object) is treated as a URL no route matched.
  if (!('routeOptions' in request)) return UNMATCHED
  const context = routeContextOf(request)
  const key = context.config ?? context
  let shape = shapes.get(key)
  if (shape === undefined) {
    shape = compile(context.config?.url, context.schema)
    shapes.set(key, shape)
  }
  return shape
}

// The static segments of every route registered in this process: of a URL no route matched, only these (and
// uuids) are shown. Words a developer wrote into a route's path, never a caller's.
const routeWords = new Set<string>()

/** Notes the static segments of a route's pattern (`onRoute`): a URL no route matched may show them. */
export function noteRouteWords (pattern: string): void {
  for (const segment of pattern.split('/')) if (segment !== '' && !segment.includes(':') && !segment.includes('*')) routeWords.add(segment)
}

// The property names the schemas of every route registered in this process declare (querystring, params, body and
// headers, nested ones too): of a parameter or field name a caller sent, only these are shown in a logged URL or
// named by a validation error. A name is as personal as a value: a caller may send a lead's name as a key, shaped
// like any identifier, and only an allow-list of the developers' words tells it apart.
const declaredNames = new Set<string>()

// A bound on the walk (a schema may nest without end), not on what a schema may be: a deeper property is not named.
const MAX_SCHEMA_DEPTH = 8
const NESTED = ['items', 'prefixItems', 'additionalProperties', 'allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else']

function noteNames (schema: unknown, depth: number): void {
  if (schema === null || typeof schema !== 'object' || depth > MAX_SCHEMA_DEPTH) return
  if (Array.isArray(schema)) {
    for (const item of schema) noteNames(item, depth + 1)
    return
  }
  const s = schema as Record<string, unknown>
  for (const [name, property] of Object.entries(propertiesOf(s))) {
    declaredNames.add(name)
    noteNames(property, depth + 1)
  }
  if (Array.isArray(s.required)) for (const name of s.required) if (typeof name === 'string') declaredNames.add(name)
  for (const key of NESTED) noteNames(s[key], depth + 1)
  const patterns = s.patternProperties
  if (patterns !== null && typeof patterns === 'object') for (const property of Object.values(patterns)) noteNames(property, depth + 1)
  // A body schema by media type: `{ content: { 'application/json': { schema } } }`.
  const content = s.content
  if (content !== null && typeof content === 'object') for (const media of Object.values(content)) noteNames((media as { schema?: unknown } | null)?.schema, depth + 1)
}

/** What an `onRoute` hook passes on: the route's pattern and its schemas. */
export interface NotedRoute {
  url: string
  schema?: { querystring?: unknown, params?: unknown, body?: unknown, headers?: unknown } | undefined
}

/**
 * Notes what a route declares (`onRoute`): the static segments of its pattern, which a URL no route matched may
 * show, and the property names of its querystring, params, body and headers schemas, which a logged URL and a
 * validation error may name.
 */
export function noteRoute (route: NotedRoute): void {
  noteRouteWords(route.url)
  const schema = route.schema
  if (schema === undefined || schema === null) return
  for (const part of [schema.querystring, schema.params, schema.body, schema.headers]) noteNames(part, 0)
}

/** Whether some route registered in this process declares a property of this name (see `noteRoute`). */
export function isDeclaredName (name: string): boolean {
  return declaredNames.has(name)
}

// The copy being made of the URL, up to `copied`; undefined while nothing was hidden. Held here rather than in a
// closure, which every call would allocate: requestUrl runs for every request's log line and span, and calls nothing
// that comes back to it.
let out: string | undefined
let copied = 0

function hide (url: string, start: number, end: number): void {
  out = (out ?? '') + url.slice(copied, start) + REDACTED
  copied = end
}

/** An undeclared parameter's name is shown when some route declares it, or it is a credential's (its value is hidden). */
function showableName (url: string, start: number, end: number): boolean {
  const name = url.slice(start, end)
  return declaredNames.has(name) || SECRET_QUERY_PARAMS.has(name.toLowerCase())
}

/**
 * The request's URL (path and query) as a log line or a span may carry it. Of the path: the matched route's static
 * segments, and each path parameter's value when its params schema gives it a shape that holds no personal data and
 * the value has it; of a URL no route matched, the segments that are a static segment of some route, and uuids. Of
 * the query: every parameter's name when some route declares it (or it names a credential); its value when
 * the route's querystring schema gives it such a shape and the value has it. Everything else is `[REDACTED]`, and
 * secrets are scrubbed as `scrubUrl` does. The URL itself when nothing is hidden (the usual request: no copy).
 */
export function requestUrl (request: FastifyRequest): string {
  const url = request.url
  if (typeof url !== 'string') return REDACTED
  const shape = shapeOf(request)
  const length = url.length
  const queryAt = url.indexOf('?')
  const pathEnd = queryAt === -1 ? length : queryAt
  out = undefined
  copied = 0

  // The path, segment by segment (the first, before the leading `/`, is empty).
  const segments = shape.segments
  let matched = segments !== null && url.charCodeAt(0) === 47
  if (matched && segments !== null) {
    let start = 0
    let index = 0
    for (;;) {
      let end = url.indexOf('/', start)
      if (end === -1 || end > pathEnd) end = pathEnd
      const segment = segments[index]
      if (segment === WILDCARD) { hide(url, start, pathEnd); index = segments.length; break }
      if (segment === undefined) { matched = false; break }
      if (typeof segment === 'string') {
        // The router matched this static segment; any other text here means the URL is not read segment by segment.
        if (end - start !== segment.length || !url.startsWith(segment, start)) { matched = false; break }
      } else if (segment === null || !segment(url, start, end)) {
        hide(url, start, end)
      }
      index++
      if (end === pathEnd) break
      start = end + 1
    }
    // A URL the router matched in other ways than segment by segment (trailing or doubled slashes ignored).
    if (index !== segments.length) matched = false
    if (!matched) { out = undefined; copied = 0 }
  }
  if (!matched) {
    let start = 0
    for (;;) {
      let end = url.indexOf('/', start)
      if (end === -1 || end > pathEnd) end = pathEnd
      if (end > start && !isUuid(url, start, end) && !routeWords.has(url.slice(start, end))) hide(url, start, end)
      if (end === pathEnd) break
      start = end + 1
    }
  }

  // The query, pair by pair, in place: a declared name is compared where it stands.
  if (queryAt !== -1) {
    let start = queryAt + 1
    while (start <= length) {
      let end = url.indexOf('&', start)
      if (end === -1) end = length
      let eq = url.indexOf('=', start)
      if (eq === -1 || eq > end) eq = end
      let declared: { check: Check | null } | undefined
      for (let i = 0; i < shape.query.length; i++) {
        const param = shape.query[i] as RouteShape['query'][number]
        if (param.name.length === eq - start && url.startsWith(param.name, start)) { declared = param; break }
      }
      if (declared === undefined && eq > start && !showableName(url, start, eq)) hide(url, start, eq)
      if (eq < end && (declared?.check == null || !declared.check(url, eq + 1, end))) hide(url, eq + 1, end)
      start = end + 1
    }
  }
  if (out === undefined) return url
  // What is shown cannot hold a secret; scrubbed anyway, so that a rule above that shows too much leaks no key.
  const shown = scrubUrl(out + url.slice(copied))
  out = undefined
  return shown
}
