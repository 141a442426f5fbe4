import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { tracing } from '@opentelemetry/sdk-node'
// The SDK's own reading of OTEL_TRACES_EXPORTER, the OTLP protocol and OTEL_BSP_*: NodeSDK builds its processors
// this way only when given none, and gives no way to add one to them. The SDK's version is pinned in package.json.
import { getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils.js'
import { EncodingSpanProcessor, type EncodingSpanProcessorOptions } from './encoding-span-processor.js'
import { otlpJsonTraceSerializer } from './otlp-json.js'
import { SpanScrubbingProcessor } from './span-scrubbing-processor.js'
import { unpatchedWarning } from './unpatched-warning.js'

/**
 * The exporting processors the environment asks for, each span scrubbed first (SpanScrubbingProcessor); none when none.
 * The OTLP/HTTP JSON exporter writes its requests with `otlpJsonTraceSerializer` (the same bytes, for less CPU), and
 * its batch processor is replaced by EncodingSpanProcessor, with the same settings, which writes each span as it ends.
 */
export function exportingSpanProcessors (): tracing.SpanProcessor[] {
  const exporting = getSpanProcessorsFromEnv(undefined).map((processor) => writeJsonDirectly(processor) ? encodingAsSpansEnd(processor) : processor)
  return exporting.length === 0 ? [] : [new SpanScrubbingProcessor(), ...exporting]
}

/** The parts of the SDK's batch processor and OTLP exporter (both pinned) that hold the exporter, its serializer and the batching settings. */
interface SerializingProcessor extends Partial<Record<`_${keyof EncodingSpanProcessorOptions}`, unknown>> {
  _exporter?: tracing.SpanExporter & { _delegate?: { _serializer?: unknown } }
}

/**
 * The SDK's batch processor's exporter and settings (read from OTEL_BSP_* by the SDK) under EncodingSpanProcessor;
 * the SDK's processor itself, never started, is dropped. If its fields moved (the SDK's version changed), the SDK's
 * processor stays, and the process warns.
 */
export function encodingAsSpansEnd (processor: tracing.SpanProcessor): tracing.SpanProcessor {
  const fields = processor as SerializingProcessor
  const options = {
    maxExportBatchSize: fields._maxExportBatchSize,
    maxQueueSize: fields._maxQueueSize,
    scheduledDelayMillis: fields._scheduledDelayMillis,
    exportTimeoutMillis: fields._exportTimeoutMillis
  }
  const exporter = fields._exporter
  if (exporter === undefined || !Object.values(options).every((n) => typeof n === 'number' && n >= 0)) {
    unpatchedWarning('the batch span processor keeps its exporter or settings elsewhere', 'spans are kept as objects until their batch is exported')
    return processor
  }
  return new EncodingSpanProcessor(exporter, options as EncodingSpanProcessorOptions)
}

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
