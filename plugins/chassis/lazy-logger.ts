import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

type LogFn = (...args: unknown[]) => void
interface PinoExtras {
  bindings: () => Bindings
  setBindings: (bindings: Bindings) => void
  flush: (callback?: (error?: Error) => void) => void
  levels: unknown
}

/**
 * The per-request logger. Fastify builds a pino child for every request, measurable per request; this one writes a
 * request's lines through the service's logger with the request's bindings in them, and makes the child only when
 * asked for one, for its level, or for a line that starts with an Error. Methods live on the prototype so a request
 * costs one small object.
 */
class LazyLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions
  #child: FastifyBaseLogger | undefined

  constructor (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #real (): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options))
  }

  #log (level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return
    if (this.#child === undefined) {
      // The parent writes the line with the request's bindings as its first fields, the line the child would write,
      // without a child per request: a pino child serializes its bindings and builds a logger, and most requests log
      // once (their request line). An Error first is left to the child: spread, it would lose its message and stack.
      const first = args[0]
      if (typeof first === 'string') {
        ;(this.#parent[level] as LogFn)({ ...this.#bindings }, ...args)
        return
      }
      if (isPlainObject(first)) {
        // The bindings again last: a logged object's own `reqId` (a request body logged whole) must not replace it.
        ;(this.#parent[level] as LogFn)({ ...this.#bindings, ...first, ...this.#bindings }, ...args.slice(1))
        return
      }
    }
    ;(this.#real()[level] as LogFn)(...args)
  }

  get level (): string { return this.#child?.level ?? this.#parent.level }
  set level (value: string) { this.#real().level = value }
  fatal (...args: unknown[]): void { this.#log('fatal', args) }
  error (...args: unknown[]): void { this.#log('error', args) }
  warn (...args: unknown[]): void { this.#log('warn', args) }
  info (...args: unknown[]): void { this.#log('info', args) }
  debug (...args: unknown[]): void { this.#log('debug', args) }
  trace (...args: unknown[]): void { this.#log('trace', args) }
  silent (): void {}
  // The rest of pino's logger that code holding `request.log` may call, each answered as the child would answer it.
  isLevelEnabled (level: string): boolean {
    const logger = (this.#child ?? this.#parent) as { isLevelEnabled?: (l: string) => boolean }
    return logger.isLevelEnabled?.(level) ?? true
  }

  bindings (): Bindings { return (this.#real() as unknown as PinoExtras).bindings() }
  setBindings (bindings: Bindings): void { (this.#real() as unknown as PinoExtras).setBindings(bindings) }
  flush (callback?: (error?: Error) => void): void { (this.#parent as unknown as Partial<PinoExtras>).flush?.(callback) }
  get levels (): unknown { return (this.#parent as unknown as Partial<PinoExtras>).levels }
  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger { return this.#real().child(bindings, options) }
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

export function lazyChildLogger (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  // A route or plugin with a log level or serializers of its own logs with them, which the service's logger does not
  // have: its requests get the real child.
  if ((options.level !== undefined && options.level !== parent.level) || options.serializers !== undefined) return parent.child(bindings, options)
  return new LazyLogger(parent, bindings, options) as unknown as FastifyBaseLogger
}
