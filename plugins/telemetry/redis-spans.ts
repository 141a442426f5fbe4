import { SpanKind, SpanStatusCode, TraceFlags, context, trace, type Span, type Tracer } from '@opentelemetry/api'
import { redisStatement } from './redis-statement.js'
import { parentBasedSampler } from './unsampled.js'
import { unpatchedWarning } from './unpatched-warning.js'

/** What the wrapper reads of an ioredis command (`Command`: name, arguments, the callbacks of its promise). */
interface RedisCommand {
  name: string
  args: Parameters<typeof redisStatement>[1]
  resolve: (value: unknown) => void
  reject: (error: Error) => void
  inTransaction?: boolean
  pipelineIndex?: number
}
interface RedisClient { options: { host?: string, port?: number } }
type SendCommand = (this: RedisClient, command: RedisCommand, stream?: unknown) => unknown
/**
 * The parts of the ioredis instrumentation (@opentelemetry/instrumentation-ioredis, pinned) the wrapper takes over:
 * the method that wraps `Redis.prototype.sendCommand`, and the tracer of its scope.
 */
interface RedisCommandTracing { _traceSendCommand?: (original: SendCommand, moduleVersion?: string) => SendCommand, tracer?: Tracer }

/**
 * Has the ioredis instrumentation trace each command with the chassis's wrapper: the same CLIENT span, under the same
 * scope, named after the command, with `db.system.name`, `db.operation.name` (`MULTI`/`PIPELINE` prefixed inside
 * one), `db.query.text` (the command and its keys, `redisStatement`), `server.address` and `server.port`, and on
 * failure the exception and status ERROR. The instrumentation's own wrapper built that object of attributes for the
 * SDK to copy twice before the span existed, and ran its (unset) request and response hooks through a guard per
 * command. Here the attributes are set only on a span that records; a command outside any span (connection checks,
 * the invalidation link) starts none, as with the instrumentation's `requireParentSpan`; and under a parent-based
 * sampler a command of an unsampled request starts none either, its span could never be recorded. Call before the
 * instrumentation patches ioredis (before ioredis is loaded). If the method moved (the instrumentation's version
 * changed), its own wrapper stays and the process warns.
 */
export function traceRedisCommands (instrumentation: object, parentBased = parentBasedSampler()): void {
  const tracing = instrumentation as RedisCommandTracing
  if (typeof tracing._traceSendCommand !== 'function') {
    unpatchedWarning('the ioredis instrumentation has no _traceSendCommand', 'its own wrapper makes the Redis spans, for every command, sampled or not')
    return
  }
  tracing._traceSendCommand = function (original) {
    return function (this: RedisClient, command: RedisCommand, stream?: unknown) {
      if (typeof command !== 'object' || command === null) return original.call(this, command, stream)
      const active = context.active()
      const parent = trace.getSpan(active)
      if (parent === undefined || (parentBased && (parent.spanContext().traceFlags & TraceFlags.SAMPLED) === 0)) return original.call(this, command, stream)
      const span = (tracing.tracer as Tracer).startSpan(command.name, { kind: SpanKind.CLIENT }, active)
      if (!span.isRecording()) return original.call(this, command, stream)
      span.setAttribute('db.system.name', 'redis')
      span.setAttribute('db.operation.name', operationName(command))
      span.setAttribute('db.query.text', redisStatement(command.name, command.args))
      const { host, port } = this.options
      if (host !== undefined) span.setAttribute('server.address', host)
      if (port !== undefined) span.setAttribute('server.port', port)
      let result: unknown
      try {
        result = original.call(this, command, stream)
      } catch (error) {
        endFailed(span, error as Error)
        throw error
      }
      const resolve = command.resolve
      const reject = command.reject
      command.resolve = (value) => { span.end(); resolve(value) }
      command.reject = (error) => { endFailed(span, error); reject(error) }
      return result
    }
  }
}

function operationName (command: RedisCommand): string {
  if (command.name === 'multi' || command.name === 'exec') return command.name
  if (command.inTransaction === true) return `MULTI ${command.name}`
  if (command.pipelineIndex != null) return `PIPELINE ${command.name}`
  return command.name
}

function endFailed (span: Span, error: Error): void {
  span.recordException(error)
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
  span.end()
}
