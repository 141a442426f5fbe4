import type { tracing } from '@opentelemetry/sdk-node'
// The SDK's own reading of OTEL_TRACES_EXPORTER, the OTLP protocol and OTEL_BSP_*: NodeSDK builds its processors
// this way only when given none, and gives no way to add one to them. The SDK's version is pinned in package.json.
import { getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils.js'
import { SpanScrubbingProcessor } from './span-scrubbing-processor.js'

/** The exporting processors the environment asks for, each span scrubbed first (SpanScrubbingProcessor); none when none. */
export function exportingSpanProcessors (): tracing.SpanProcessor[] {
  const exporting = getSpanProcessorsFromEnv(undefined)
  return exporting.length === 0 ? [] : [new SpanScrubbingProcessor(), ...exporting]
}
