import { ProxyTracer, SamplingDecision, TraceFlags, trace, type Context, type Tracer } from '@opentelemetry/api'
import { core, tracing } from '@opentelemetry/sdk-node'
import { PooledIdGenerator } from './id-generator.js'
import { contextWithSpan } from './span-context.js'
import { sdkMetricsEnabled } from './span-count-metrics.js'
import { unpatchedWarning } from './unpatched-warning.js'

/** The SDK tracer's private parts read here (sdk-trace is pinned through sdk-node): its sampler and id generator. */
interface SdkTracer { _sampler?: unknown, _idGenerator?: unknown, instrumentationScope?: unknown }
/** The private parts of the SDK's TraceIdRatioBasedSampler that decide: the trace id's hash, and the bound it must stay under. */
interface RatioSampler { _accumulate?: (traceId: string) => number, _upperBound?: unknown }

const { isTracingSuppressed } = core

/**
 * A new trace's sampling, decided ahead of the SDK's `startSpan` for the traces its sampler declines. At the shipped
 * sampling (`parentbased_traceidratio`, 0.1) nine requests in ten start a trace that is never recorded, and for each
 * the SDK ran its sampler and made two ids and a span object that records nothing, only for its ids and flags to be
 * carried in the request's context (its log lines, its outgoing calls' `traceparent`, the Redis and query seams).
 * Here the trace id is drawn from the SDK's own id generator and put to the SDK's own root sampler; a declined trace
 * gets the same ids and flags in a context with no SDK span; a sampled one goes back to the SDK, whose next trace id
 * is the one decided on, so that its sampler decides the same and it stays the source of every recorded span.
 */
export class RootSampling {
  readonly #ids: PooledIdGenerator
  readonly #samples: (parent: Context, traceId: string) => boolean

  private constructor (ids: PooledIdGenerator, samples: (parent: Context, traceId: string) => boolean) {
    this.#ids = ids
    this.#samples = samples
  }

  /**
   * The root sampling of the SDK tracer behind `tracer`, or undefined where the SDK must decide itself: a tracer that
   * is not the SDK's, ids not from the pool, a root sampler that reads more than the trace id (anything but
   * `TraceIdRatioBased` and `AlwaysOff`, bare or as a `ParentBased` root), or span counts exported
   * (OTEL_NODE_EXPERIMENTAL_SDK_METRICS=true), which count the spans that record nothing too.
   */
  static of (tracer: Tracer): RootSampling | undefined {
    const sdk = sdkTracer(tracer)
    if (!('_sampler' in sdk && '_idGenerator' in sdk)) {
      // The SDK's tracer (it holds its scope) without them: its version changed.
      if ('instrumentationScope' in sdk) unpatchedWarning('the SDK\'s tracer keeps its sampler or id generator elsewhere', 'every request that starts a trace gets an SDK span, sampled or not')
      return undefined
    }
    if (sdkMetricsEnabled() || !(sdk._idGenerator instanceof PooledIdGenerator)) return undefined
    const sampler = sdk._sampler instanceof tracing.ParentBasedSampler ? (sdk._sampler as unknown as { _root?: unknown })._root : sdk._sampler
    if (sampler instanceof tracing.AlwaysOffSampler) return new RootSampling(sdk._idGenerator, () => false)
    if (!(sampler instanceof tracing.TraceIdRatioBasedSampler)) return undefined
    // The sampler's own hash and bound, without its check that the id is 32 hex digits (a loop over them,
    // `isValidTraceId`): a pooled id always is. Its public method if those moved.
    const ratio = sampler as unknown as RatioSampler
    const accumulate = ratio._accumulate
    const bound = ratio._upperBound
    if (typeof accumulate === 'function' && typeof bound === 'number') {
      const ids = sdk._idGenerator
      // The hash from the pool's bytes: the sampler's own parses the id's hex digits back, four slices and parseInts.
      return new RootSampling(ids, (_parent, traceId) => (ids.traceHashOf(traceId) ?? accumulate.call(sampler, traceId)) < bound)
    }
    return new RootSampling(sdk._idGenerator, (parent, traceId) => sampler.shouldSample(parent, traceId).decision !== SamplingDecision.NOT_RECORD)
  }

  /**
   * The context of the new trace a request under `parent` (which holds no valid span context) starts, if the
   * sampler declines it: the ids and flags the SDK's span that records nothing would have carried, under `parent`.
   * Undefined if it samples it (the SDK's `startSpan` then takes the same trace id) or tracing is suppressed.
   */
  declined (parent: Context): Context | undefined {
    if (isTracingSuppressed(parent)) return undefined
    const traceId = this.#ids.generateTraceId()
    if (this.#samples(parent, traceId)) {
      this.#ids.giveBackTraceId(traceId)
      return undefined
    }
    // Neither sampler sets a trace state.
    return contextWithSpan(parent, trace.wrapSpanContext({ traceId, spanId: this.#ids.generateSpanId(), traceFlags: TraceFlags.NONE }))
  }
}

/** The tracer that starts the spans: a proxy's delegate, once the SDK has started. */
export function sdkTracer (tracer: Tracer): SdkTracer {
  return (tracer instanceof ProxyTracer ? (tracer as unknown as { _getTracer: () => Tracer })._getTracer() : tracer) as SdkTracer
}

/** Whether a span started under `parent` starts a new trace: the SDK's test, no valid span context in it. */
export function startsTrace (parent: Context): boolean {
  const caller = trace.getSpanContext(parent)
  return caller === undefined || !trace.isSpanContextValid(caller)
}
