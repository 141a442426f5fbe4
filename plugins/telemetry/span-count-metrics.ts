import { ProxyTracerProvider, type Tracer, type TracerProvider } from '@opentelemetry/api'
import { unpatchedWarning } from './unpatched-warning.js'

type EndCount = () => void
/** The SDK tracer's private counter of its own spans (`otel.sdk.span.started`, `otel.sdk.span.live`; sdk-trace is pinned through sdk-node). */
interface CountingTracer { _tracerMetrics?: { startSpan: (...args: unknown[]) => EndCount } }
interface TracerCache { getTracer: (...args: unknown[]) => Tracer, _tracers?: Map<string, CountingTracer> }

const noCount: EndCount = () => {}
const NO_SPAN_COUNTS = { startSpan: (): EndCount => noCount }

/**
 * Whether the SDK counts its own spans into a meter provider that exports them (OTEL_NODE_EXPERIMENTAL_SDK_METRICS,
 * read as the SDK reads it). Otherwise it counts them into a no-op meter.
 */
export function sdkMetricsEnabled (value = process.env.OTEL_NODE_EXPERIMENTAL_SDK_METRICS): boolean {
  return value?.trim().toLowerCase() === 'true'
}

/** The provider behind the API's global one: the SDK's, once it has started with an exporter. */
export function sdkTracerProvider (global: TracerProvider): TracerProvider {
  return global instanceof ProxyTracerProvider ? global.getDelegate() : global
}

/**
 * Stops the provider's tracers from counting their spans into a meter that drops the counts. Each span the SDK starts
 * builds two attribute objects with computed keys (a call into V8's runtime each) and a closure for its end, for
 * `otel.sdk.span.*` counters that, unless OTEL_NODE_EXPERIMENTAL_SDK_METRICS=true, are the API's no-op ones. Call
 * only then. A provider whose tracers keep the counter elsewhere (its version changed) keeps counting and the process
 * warns; a provider that is not the SDK's (nothing exported, so no span recorded) is left alone.
 */
export function skipSpanCountMetrics (provider: TracerProvider): void {
  const cache = provider as unknown as TracerCache
  if (!(cache._tracers instanceof Map)) {
    if (typeof (provider as { forceFlush?: unknown }).forceFlush === 'function') warn()
    return
  }
  const probe = cache.getTracer('lead-chassis/span-count-metrics') as unknown as CountingTracer
  if (typeof probe._tracerMetrics?.startSpan !== 'function') { warn(); return }
  for (const tracer of cache._tracers.values()) quiet(tracer)
  const getTracer = cache.getTracer
  cache.getTracer = function (this: unknown, ...args: unknown[]) {
    const tracer = getTracer.apply(this, args)
    quiet(tracer as unknown as CountingTracer)
    return tracer
  }
}

function quiet (tracer: CountingTracer): void {
  if (tracer._tracerMetrics !== undefined) tracer._tracerMetrics = NO_SPAN_COUNTS
}

function warn (): void {
  unpatchedWarning('the SDK\'s tracer keeps its span counts elsewhere', 'every span still counts itself into a meter that drops the counts')
}
