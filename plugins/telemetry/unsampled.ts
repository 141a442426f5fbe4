import { TraceFlags, context, trace } from '@opentelemetry/api'

/**
 * Whether the sampler (OTEL_TRACES_SAMPLER, the SDK's default `parentbased_always_on` when unset) follows the parent:
 * then a span started under a parent that records nothing records nothing either, and need not be started at all.
 */
export function parentBasedSampler (sampler = process.env.OTEL_TRACES_SAMPLER): boolean {
  // As the SDK reads it: blank is unset, and any name but these (`traceidratio ` with its space included) falls back
  // to the default, parentbased_always_on.
  return sampler === undefined || !ROOT_SAMPLERS.includes(sampler)
}

const ROOT_SAMPLERS = ['always_on', 'always_off', 'traceidratio']

/**
 * Whether the active context holds a span whose trace is not sampled: the work of an unsampled request. The flag, as
 * the parent-based sampler reads it, and not `isRecording()`: a caller's propagated context is a span that records
 * nothing whether or not its trace is sampled.
 */
export function insideUnsampledSpan (): boolean {
  const span = trace.getSpan(context.active())
  return span !== undefined && (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0
}
