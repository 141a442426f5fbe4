import { TraceFlags, type Context } from '@opentelemetry/api'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { tracing } from '@opentelemetry/sdk-node'
// The SDK's own reading of OTEL_TRACES_EXPORTER, the OTLP protocol and OTEL_BSP_*: NodeSDK builds its processors
// this way only when given none, and gives no way to add one to them. The SDK's version is pinned in package.json.
import { getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils.js'
import { WrittenSpan, otlpJsonTraceSerializer } from './otlp-json.js'
import { SpanScrubbingProcessor } from './span-scrubbing-processor.js'
import { unpatchedWarning } from './unpatched-warning.js'

/**
 * The exporting processors the environment asks for, each span scrubbed first (SpanScrubbingProcessor); none when none.
 * The OTLP/HTTP JSON exporter writes its requests with `otlpJsonTraceSerializer` (the same bytes, for less CPU), each
 * sampled span written as it ends (WritingAtEnd).
 */
export function exportingSpanProcessors (): tracing.SpanProcessor[] {
  const exporting = getSpanProcessorsFromEnv(undefined).map((processor) => writeJsonDirectly(processor) ? new WritingAtEnd(processor) : processor)
  return exporting.length === 0 ? [] : [new SpanScrubbingProcessor(), ...exporting]
}

/**
 * The batch processor of the chassis's JSON writer, handed each sampled span already written (WrittenSpan) instead of
 * the SDK's span. The resource's attributes are written at export, once they have settled, as the SDK writes them.
 */
class WritingAtEnd implements tracing.SpanProcessor {
  readonly #batch: tracing.SpanProcessor

  constructor (batch: tracing.SpanProcessor) {
    this.#batch = batch
  }

  onStart (span: tracing.Span, parent: Context): void {
    this.#batch.onStart(span, parent)
  }

  onEnd (span: tracing.ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    let written: tracing.ReadableSpan = span
    // A span ends inside the request's own work (a Redis reply's callback, a query's): a writer that threw there
    // would fail that work. The span is then written at its export, as the SDK's spans are.
    try {
      written = new WrittenSpan(span) as unknown as tracing.ReadableSpan
    } catch {
      // Written at export instead, where the batch processor reports what fails.
    }
    this.#batch.onEnd(written)
  }

  forceFlush (): Promise<void> {
    return this.#batch.forceFlush()
  }

  shutdown (): Promise<void> {
    return this.#batch.shutdown()
  }
}

/** The parts of the SDK's batch processor and OTLP exporter (both pinned) that hold the exporter's serializer. */
interface SerializingProcessor { _exporter?: { _delegate?: { _serializer?: unknown } } }

/**
 * Gives the processor's OTLP/HTTP JSON exporter the chassis's serializer. The SDK takes no serializer from outside:
 * its exporter keeps it in a private field. If that field moved (the SDK's version changed), the exporter keeps the
 * SDK's serializer and the process warns (`unpatchedWarning`): a slower export, not a service that cannot start.
 */
export function writeJsonDirectly (processor: tracing.SpanProcessor): boolean {
  const delegate = (processor as SerializingProcessor)._exporter?._delegate
  if (delegate?._serializer === JsonTraceSerializer) {
    delegate._serializer = otlpJsonTraceSerializer
    return true
  }
  const protocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL
  const exporters = process.env.OTEL_TRACES_EXPORTER ?? 'otlp'
  if (protocol === 'http/json' && exporters.split(',').map((s) => s.trim()).join(',') === 'otlp') {
    unpatchedWarning('the OTLP/HTTP JSON exporter keeps its serializer elsewhere', 'exports are written by the SDK\'s serializer')
  }
  return false
}
