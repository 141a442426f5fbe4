import pino, { type LoggerOptions } from 'pino'
import { mergeMixinFields } from './log-mixin.js'
import { requestLogValue } from './log-serializers.js'

/** What replaces a redacted value in a log line. */
const LOG_CENSOR = '[redacted]'

/** Credentials, censored under `req.headers`, and as any property so named (a handler that logs its request's headers). */
const SECRET_HEADERS: readonly string[] = ['authorization', 'cookie', 'x-api-key', 'x-service-key']
/** Personal data and credentials: a property of this name is censored in the first three levels of anything logged. */
const PERSONAL_FIELDS: ReadonlySet<string> = new Set(['email', 'phone', 'firstName', 'lastName', 'first_name', 'last_name', ...SECRET_HEADERS])

type Bag = Record<string, unknown>

/** A copy of `value` (same prototype, so `toJSON` still applies) that may be changed. */
function copyOf (value: object): Bag {
  return Array.isArray(value) ? [...value] as unknown as Bag : Object.assign(Object.create(Object.getPrototypeOf(value) as object | null) as Bag, value)
}

/**
 * `value` with every personal field in its next `levels` levels censored; the same object when it holds none (the
 * usual case: nothing is allocated). Bytes (Buffers, typed arrays) hold no property names and are not walked.
 */
function scrubbed (value: unknown, levels: number): unknown {
  if (levels === 0 || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value
  let copy: Bag | undefined
  const source = value as Bag
  for (const key in source) {
    if (!Object.hasOwn(source, key)) continue
    const before = source[key]
    const after = PERSONAL_FIELDS.has(key) && before !== undefined ? LOG_CENSOR : scrubbed(before, levels - 1)
    if (after !== before) (copy ??= copyOf(source))[key] = after
  }
  return copy ?? value
}

/** A logged object (or a child logger's bindings): personal fields at its top level and the two below it censored. */
function scrubLogObject (object: Bag): Bag {
  let copy: Bag | undefined
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue
    const before = object[key]
    // These are turned into plain values by their serializers, which scrub what they produce.
    if (SERIALIZED.has(key)) continue
    const after = PERSONAL_FIELDS.has(key) && before !== undefined ? LOG_CENSOR : scrubbed(before, 2)
    if (after !== before) (copy ??= { ...object })[key] = after
  }
  return copy ?? object
}

function scrubRequest (value: Bag): Bag {
  const scrubbedValue = scrubbed(value, 2) as Bag
  const headers = scrubbedValue.headers
  if (headers === null || typeof headers !== 'object' || !SECRET_HEADERS.some((h) => Object.hasOwn(headers, h))) return scrubbedValue
  const censored = copyOf(headers)
  for (const h of SECRET_HEADERS) if (Object.hasOwn(censored, h)) censored[h] = LOG_CENSOR
  return { ...scrubbedValue, headers: censored }
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
  err: (error: Error) => scrubbed(withoutCommandArgs(pino.stdSerializers.err(error)), 2)
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
}

/**
 * The pino options that keep personal data (a lead's names, email, phone) and credentials out of every log line:
 * those fields in the first three levels of a logged object or the logger's bindings, and the credential headers of
 * a logged request, become `[redacted]` (a child's bindings with `censorChildBindings`). Written by hand instead of pino's `redact` paths: pino 10's
 * redactor clones and walks every path for each value of each line, the message included, and the wildcard paths
 * this needs made the two lines a request logs at `info` cost about four times what writing them did; here a line
 * with nothing to censor is walked once and copied never.
 */
export const logRedaction: Pick<LoggerOptions, 'formatters' | 'serializers' | 'mixinMergeStrategy'> = Object.freeze({
  formatters: Object.freeze({ log: scrubLogObject, bindings: scrubLogObject }),
  serializers: Object.freeze(SERIALIZERS),
  // Not redaction, but every logger the chassis makes gets these options: see log-mixin.ts.
  mixinMergeStrategy: mergeMixinFields
})
