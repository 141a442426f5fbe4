import pino, { type LoggerOptions } from 'pino'
import { mergeMixinFields } from './log-mixin.js'
import { requestLogValue } from './log-serializers.js'

/** What replaces a redacted value in a log line. */
const LOG_CENSOR = '[redacted]'

/** Credentials: a logged request's headers, or any property so named (a handler that logs its request's headers). */
const SECRET_HEADERS: readonly string[] = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'x-service-key']
/** Credentials as a handler's own objects name them, where no separator gives them away (see CREDENTIAL_NAME). */
const SECRET_FIELDS: readonly string[] = [
  'password', 'passwd', 'secret', 'token', 'apikey', 'apiKey', 'accessToken', 'refreshToken', 'idToken', 'clientSecret',
  'privateKey', 'sessionToken', 'serviceKey', 'previousServiceKey', 'secretAccessKey', 'credentials', 'SERVICE_API_KEY_PREVIOUS',
  // Headers as a handler spells them in an object of its own (a request's headers arrive in lower case).
  'Authorization', 'Proxy-Authorization', 'Cookie', 'Set-Cookie', 'Password'
]
/** Personal data and credentials: a property of this name is censored at any depth of anything logged. */
const PERSONAL_FIELDS: ReadonlySet<string> = new Set(['email', 'phone', 'firstName', 'lastName', 'first_name', 'last_name', ...SECRET_HEADERS, ...SECRET_FIELDS])
/**
 * A credential by the end of its name, past a separator: an API key header of another name (the api-keys plugin's
 * `header` option, `x-lead-key`, `x-apikey`), an `x-auth-token`, a `client_secret`, an `x-amz-security-token`. A name without a separator is not tested
 * (the request line's own fields cost no regular expression), nor a bare `key` (a cache key).
 */
const CREDENTIAL_NAME = /[-_](?:api[-_]?)?(?:key|token|secret|password|passwd|credentials?|auth|authorization)$/i

// The verdict of every name met, personal fields first: names repeat from line to line, so a property costs one
// lookup, as a lookup of PERSONAL_FIELDS alone did, and the expression runs once per name. Bounded: past
// VERDICTS_MAX names it starts over.
const verdicts = new Map<string, boolean>()
const VERDICTS_MAX = 2000

function censored (key: string): boolean {
  const verdict = verdicts.get(key)
  return verdict !== undefined ? verdict : learn(key)
}

function learn (key: string): boolean {
  if (verdicts.size >= VERDICTS_MAX) verdicts.clear()
  const verdict = PERSONAL_FIELDS.has(key) || ((key.includes('-') || key.includes('_')) && CREDENTIAL_NAME.test(key))
  verdicts.set(key, verdict)
  return verdict
}
/**
 * The bounds of one line's walk: objects nested deeper than MAX_DEPTH, and the object being walked when the line's
 * MAX_PROPERTIES properties are spent, are written as the censor instead of walked, so a line whose object is too
 * deep or too large to check is cut short rather than written unchecked (and an object graph with shared parts
 * cannot make the walk exponential). The budget bounds the walk's time too: about a millisecond of walking.
 */
const MAX_DEPTH = 32
const MAX_PROPERTIES = 10_000
/** What replaces a reference back to an object the walk is inside: the copy it makes must not be circular. */
const CIRCULAR = '[Circular]'

type Bag = Record<string, unknown>

/** A copy of `value` (same prototype, so `toJSON` still applies) that may be changed. */
function copyOf (value: object): Bag {
  if (Array.isArray(value)) return [...value] as unknown as Bag
  const copy = Object.create(Object.getPrototypeOf(value) as object | null) as Bag
  // Defined, not assigned: an own property shadowing a frozen one of the prototype cannot be assigned.
  for (const key of Object.keys(value)) Object.defineProperty(copy, key, { value: (value as Bag)[key], enumerable: true, writable: true, configurable: true })
  return copy
}

/** The walk of one line: the objects it is inside, and how many more properties it may look at. */
const path: object[] = []
let propertiesLeft = MAX_PROPERTIES

/**
 * `value` with every personal field in it censored, `depth` levels below the logged object; the same object when
 * it holds none (the usual case: nothing is allocated). Bytes (Buffers, typed arrays) hold no property names and
 * are not walked. An object with a `toJSON` (other than a Date's) is walked as what it gives, which is what the
 * line would show. A value whose walk throws (a getter, a revoked Proxy) is written as the censor: the line is
 * written, never the value unchecked.
 */
function scrubbed (value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  if (depth > MAX_DEPTH || propertiesLeft <= 0) return LOG_CENSOR
  if (path.includes(value)) return CIRCULAR
  path.push(value)
  try {
    if (ArrayBuffer.isView(value) || value instanceof Date) return value
    const toJSON = (value as { toJSON?: unknown }).toJSON
    if (typeof toJSON === 'function') {
      const shown: unknown = toJSON.call(value)
      return shown === value ? walked(value as Bag, depth) : scrubbed(shown, depth)
    }
    return walked(value as Bag, depth)
  } catch {
    return LOG_CENSOR
  } finally {
    path.pop()
  }
}

function walked (source: Bag, depth: number): unknown {
  let copy: Bag | undefined
  if (Array.isArray(source)) {
    // By index: for...in lists every index of an array as a string before its first turn.
    for (let i = 0; i < source.length; i++) {
      if (--propertiesLeft < 0) return LOG_CENSOR
      const before: unknown = source[i]
      const after = scrubbed(before, depth + 1)
      if (after !== before) (copy ??= copyOf(source))[i] = after
    }
    return copy ?? source
  }
  for (const key in source) {
    if (!Object.hasOwn(source, key)) continue
    if (--propertiesLeft < 0) return LOG_CENSOR
    const before = source[key]
    const after = censored(key) && before !== undefined ? LOG_CENSOR : scrubbed(before, depth + 1)
    if (after !== before) (copy ??= copyOf(source))[key] = after
  }
  return copy ?? source
}

/**
 * Starts the walk of a line's value (a logged object, or what a serializer made): the line's budget of properties is
 * set anew unless this runs inside another walk (a getter that logs), whose budget it then shares.
 */
function startWalk (): void {
  if (path.length === 0) propertiesLeft = MAX_PROPERTIES
}

/** A logged object (or a child logger's bindings): personal fields at any depth censored. */
function scrubLogObject (object: Bag): Bag {
  startWalk()
  let copy: Bag | undefined
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue
    const before = object[key]
    // These are turned into plain values by their serializers, which scrub what they produce.
    if (SERIALIZED.has(key)) continue
    const after = censored(key) && before !== undefined ? LOG_CENSOR : scrubbed(before, 1)
    if (after !== before) (copy ??= { ...object })[key] = after
  }
  return copy ?? object
}

/** A logged request, walked as any value: its credential headers are censored by their names. */
function scrubRequest (value: Bag): unknown {
  startWalk()
  return scrubbed(value, 1)
}

/**
 * A serialized error with the Redis command it carries (ioredis puts `command: { name, args }` on a ReplyError)
 * reduced to the command's name: its arguments are whatever was sent, keys and values holding personal data.
 */
function withoutCommandArgs (value: unknown): unknown {
  const command = (value as { command?: unknown } | null)?.command
  if (command === null || typeof command !== 'object') return value
  return { ...(value as Bag), command: (command as { name?: unknown }).name }
}

const SERIALIZERS = {
  req: (request: Parameters<typeof requestLogValue>[0]) => scrubRequest(requestLogValue(request)),
  // Fastify's own: the status only.
  res: (reply: { statusCode: number }) => ({ statusCode: reply.statusCode }),
  err: (error: Error) => {
    startWalk()
    return scrubbed(withoutCommandArgs(pino.stdSerializers.err(error)), 1)
  }
}
const SERIALIZED: ReadonlySet<string> = new Set(Object.keys(SERIALIZERS))

type Child = (this: unknown, bindings: Bag, options?: unknown) => unknown

/**
 * Has every child of `logger` (a pino logger), and their children, censor their bindings as a logged object is:
 * pino applies `formatters.bindings` to the root's bindings only. A child is created from its parent with
 * `Object.create`, so it inherits the wrapped method.
 */
export function censorChildBindings (logger: object): void {
  const child = (logger as { child: Child }).child
  Object.defineProperty(logger, 'child', {
    value: function censoredChild (this: unknown, bindings: Bag, options?: unknown) { return child.call(this, scrubLogObject(bindings), options) },
    writable: true,
    configurable: true
  })
  // Bindings set later (`request.log.setBindings`) are censored the same way.
  const setBindings = (logger as { setBindings?: (this: unknown, bindings: Bag) => void }).setBindings
  if (typeof setBindings === 'function') {
    Object.defineProperty(logger, 'setBindings', {
      value: function censoredSetBindings (this: unknown, bindings: Bag) { setBindings.call(this, scrubLogObject(bindings)) },
      writable: true,
      configurable: true
    })
  }
}

type LogMethod = (this: unknown, ...args: unknown[]) => void

/**
 * The values a message interpolates (`log.info('lead %j', lead)`, `%o`, `%O`), scrubbed as a logged object is: pino
 * writes them into `msg`, which no formatter or serializer sees. They follow the message, which is the first
 * argument or, after a logged object, the second.
 */
function scrubInterpolated (this: unknown, args: unknown[], method: LogMethod): void {
  // After a logged object, a message that is not a string (JavaScript callers can pass one) is scrubbed as well.
  const first = typeof args[0] === 'string' ? 1 : typeof args[1] === 'string' ? 2 : 1
  for (let i = first; i < args.length; i++) {
    startWalk()
    args[i] = scrubbed(args[i], 1)
  }
  method.apply(this, args)
}

/**
 * The pino options that keep personal data (a lead's names, email, phone) and credentials out of every log line:
 * those fields at any depth of a logged object, of the values its message interpolates and of the logger's
 * bindings, and the credential headers of a logged request, become `[redacted]` (a child's bindings with
 * `censorChildBindings`). Written by hand instead of pino's `redact` paths: pino 10's
 * redactor clones and walks every path for each value of each line, the message included, and the wildcard paths
 * this needs made the two lines a request logs at `info` cost about four times what writing them did; here a line
 * with nothing to censor is walked once and copied never.
 */
export const logRedaction: Pick<LoggerOptions, 'formatters' | 'serializers' | 'mixinMergeStrategy' | 'hooks'> = Object.freeze({
  formatters: Object.freeze({ log: scrubLogObject, bindings: scrubLogObject }),
  serializers: Object.freeze(SERIALIZERS),
  hooks: Object.freeze({ logMethod: scrubInterpolated as NonNullable<LoggerOptions['hooks']>['logMethod'] }),
  // Not redaction, but every logger the chassis makes gets these options: see log-mixin.ts.
  mixinMergeStrategy: mergeMixinFields
})
