import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

type LogFn = (...args: unknown[]) => void

/**
 * The per-request logger, created only when a request actually logs at an enabled level. Fastify builds a pino
 * child for every request; at `warn` and above most requests never log, and that child was measurable per request.
 * Methods live on the prototype so a request costs one small object.
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
    const enabled = (this.#parent as { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled
    if (enabled && !enabled.call(this.#parent, level)) return
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
  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger { return this.#real().child(bindings, options) }
}

export function lazyChildLogger (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  // A route or plugin with a log level of its own logs at that level, which the service's level does not tell: its
  // requests get the real child.
  if (options.level !== undefined && options.level !== parent.level) return parent.child(bindings, options)
  return new LazyLogger(parent, bindings, options) as unknown as FastifyBaseLogger
}
