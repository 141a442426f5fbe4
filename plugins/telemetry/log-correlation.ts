import { TraceFlags, context, trace } from '@opentelemetry/api'
import { unpatchedWarning } from './unpatched-warning.js'

type Fields = Record<string, string>

/**
 * The fields a log line gets from its request's trace (a pino mixin): `trace_id`, `span_id` and `trace_flags` when
 * the trace is sampled, none otherwise. An unsampled trace is stored nowhere, so its id on a line leads to no trace;
 * at the shipped 10% nine lines in ten would carry three fields for nobody. A request's lines are tied together by its
 * request id (`reqId`) either way.
 */
function sampledTraceFields (): Fields {
  const span = trace.getSpan(context.active())
  if (span === undefined) return {}
  const ids = span.spanContext()
  if ((ids.traceFlags & TraceFlags.SAMPLED) === 0) return {}
  // The keys the pino instrumentation writes, so that the collector and Jaeger's log links read them as before.
  return { trace_id: ids.traceId, span_id: ids.spanId, trace_flags: '01' }
}

/** The one method of the pino instrumentation (@opentelemetry/instrumentation-pino) that makes its mixin. */
interface PinoCorrelation { _getMixinFunction?: () => (...args: unknown[]) => Fields }

/**
 * Has the pino instrumentation put `sampledTraceFields` on every logger instead of its own mixin, which added the ids
 * of every trace, sampled or not, and built each line's fields with computed keys and two hex checks by regular
 * expression. Call before pino is loaded.
 */
export function correlateSampledLogLines (instrumentation: object): void {
  const pino = instrumentation as PinoCorrelation
  if (typeof pino._getMixinFunction !== 'function') {
    unpatchedWarning('the pino instrumentation has no _getMixinFunction', 'log lines carry the ids of every trace, sampled or not')
    return
  }
  pino._getMixinFunction = () => sampledTraceFields
}
