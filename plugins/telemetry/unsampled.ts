import { TraceFlags, context, trace } from '@opentelemetry/api'
import { unpatchedWarning } from './unpatched-warning.js'

/**
 * Whether the sampler (OTEL_TRACES_SAMPLER, the SDK's default `parentbased_always_on` when unset) follows the parent:
 * then a span started under a parent that records nothing records nothing either, and need not be started at all.
 */
export function parentBasedSampler (sampler = process.env.OTEL_TRACES_SAMPLER): boolean {
  return (sampler ?? 'parentbased_always_on').startsWith('parentbased_')
}

/**
 * Whether the active context holds a span whose trace is not sampled: the work of an unsampled request. The flag, as
 * the parent-based sampler reads it, and not `isRecording()`: a caller's propagated context is a span that records
 * nothing whether or not its trace is sampled.
 */
export function insideUnsampledSpan (): boolean {
  const span = trace.getSpan(context.active())
  return span !== undefined && (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0
}

type SendCommand = (this: unknown, ...args: unknown[]) => unknown
/** The one method of the ioredis instrumentation (@opentelemetry/instrumentation-ioredis, pinned through auto-instrumentations-node) that wraps `Redis.prototype.sendCommand`. */
interface RedisCommandTracing { _traceSendCommand?: (original: SendCommand, moduleVersion?: string) => SendCommand }

/**
 * Lets a Redis command of an unsampled request bypass the ioredis instrumentation: its wrapper would build the span's
 * attributes, start a span that records nothing and wrap the command's callbacks, for every command. Under a
 * parent-based sampler that span could never be recorded, so skipping it changes no trace. Call before the
 * instrumentation patches ioredis (before ioredis is loaded).
 */
export function skipUnsampledRedisCommands (instrumentation: object): void {
  const tracing = instrumentation as RedisCommandTracing
  const traceSendCommand = tracing._traceSendCommand
  if (typeof traceSendCommand !== 'function') {
    unpatchedWarning('the ioredis instrumentation has no _traceSendCommand', 'every Redis command goes through the instrumentation, sampled or not')
    return
  }
  tracing._traceSendCommand = function (original, moduleVersion) {
    const traced = traceSendCommand.call(this, original, moduleVersion)
    return function (this: unknown, ...args: unknown[]) {
      return insideUnsampledSpan() ? original.apply(this, args) : traced.apply(this, args)
    }
  }
}
