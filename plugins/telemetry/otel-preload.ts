// Loaded with `node --import` before anything else, so that HTTP, Fastify, pg and ioredis are instrumented.
// With no exporter configured (no OTEL_EXPORTER_OTLP_ENDPOINT, no OTEL_TRACES_EXPORTER, or OTEL_TRACES_EXPORTER=none
// and no other signal), or with OTEL_SDK_DISABLED=true, nothing is started at all.
import { register } from 'node:module'

// OpenTelemetry's switch for the whole SDK, read as the SDK reads a boolean: `true` in any case, spaces trimmed. The
// SDK alone would stop exporting but leave every instrumentation's hooks and wrappers running for nothing.
const disabled = process.env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true'
// A switch set to a value read as false (`1`, `yes`, `on`) would otherwise do nothing without a word: the SDK's own
// warning goes to its diagnostic logger, which no service enables.
for (const [name, consequence] of [['OTEL_SDK_DISABLED', 'the SDK is not disabled'], ['OTEL_FASTIFY_DETAIL', 'no span per hook and handler'], ['OTEL_PG_INSTRUMENTATION', 'query spans come from the db-pool seam']] as const) {
  const value = process.env[name]
  if (value !== undefined && value.trim() !== '' && !['true', 'false'].includes(value.trim().toLowerCase())) {
    process.emitWarning(`${name}=${JSON.stringify(value)} is neither true nor false, so it is read as false: ${consequence}`, { code: 'LEAD_CHASSIS_OTEL_SETTING_IGNORED' })
  }
}
// An endpoint of only spaces is none, as the SDK reads it (which would otherwise send to its default, localhost:4318).
const endpoint = Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim())
/** A signal's exporters, read as the SDK reads the list: names trimmed, empty ones and `null` left out. */
const exporters = (name: string): string[] => (process.env[name] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'null')
const traces = exporters('OTEL_TRACES_EXPORTER')
// The SDK exports no trace when the list begins with `none` (whatever follows it) or holds no name it knows; the
// instrumentations would then hook and wrap every request for nothing. None named: otlp, when an endpoint is set.
const tracesExported = traces.length === 0 ? endpoint : traces[0] !== 'none' && traces.some((s) => s === 'otlp' || s === 'zipkin' || s === 'console')
const otherSignal = (name: string): boolean => exporters(name).some((s) => s !== 'none')
const configured = !disabled && (tracesExported || (endpoint && (otherSignal('OTEL_METRICS_EXPORTER') || otherSignal('OTEL_LOGS_EXPORTER'))))

if (configured) {
  // Traces only, unless other signals are asked for by name: logs go to stdout and metrics to Prometheus (/metrics),
  // and the collector has a traces pipeline alone. The SDK's defaults (otlp for both) would send every log line as
  // an OTLP log record, whether or not its request was sampled (`npm run bench:tracing` measures what that adds;
  // docs/observability.md).
  process.env.OTEL_LOGS_EXPORTER ??= 'none'
  process.env.OTEL_METRICS_EXPORTER ??= 'none'
  // Traces go as OTLP/HTTP JSON unless a protocol is chosen: the SDK's JSON export path costs the service's thread
  // less CPU than its protobuf one, for about twice the bytes (`npm run bench:otlp-encoding`; docs/observability.md has figures).
  if (!process.env.OTEL_EXPORTER_OTLP_PROTOCOL && !process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = 'http/json'
  // The SDK falls back to sampling every trace for a sampler name it does not know (`traceidratio ` with its space
  // included) and for a ratio it cannot read or out of 0..1 (`10` meant as 10%), saying so to its diagnostic logger only.
  const sampler = process.env.OTEL_TRACES_SAMPLER?.trim() === '' ? undefined : process.env.OTEL_TRACES_SAMPLER
  if (sampler !== undefined && !['always_on', 'always_off', 'parentbased_always_on', 'parentbased_always_off', 'traceidratio', 'parentbased_traceidratio'].includes(sampler)) {
    process.emitWarning(`OTEL_TRACES_SAMPLER=${JSON.stringify(sampler)} is not a sampler the SDK knows: every trace is sampled (parentbased_always_on)`, { code: 'LEAD_CHASSIS_OTEL_SETTING_IGNORED' })
  } else if (sampler === 'traceidratio' || sampler === 'parentbased_traceidratio') {
    const arg = process.env.OTEL_TRACES_SAMPLER_ARG ?? ''
    const ratio = arg.trim() === '' ? NaN : Number(arg)
    if (!(ratio >= 0 && ratio <= 1)) process.emitWarning(`OTEL_TRACES_SAMPLER_ARG=${JSON.stringify(arg)} is not a ratio from 0 to 1: every trace is sampled`, { code: 'LEAD_CHASSIS_OTEL_SETTING_IGNORED' })
  }
  // An endpoint without its scheme (`collector:4318`, a usual slip) is a URL to the OTLP/HTTP exporter, of a scheme it
  // cannot send to: every export fails, and the SDK says so only to its diagnostic logger, which no service enables.
  const tracesEndpointName = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT'
  const tracesEndpoint = process.env[tracesEndpointName]?.trim()
  const protocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL
  if (tracesEndpoint && protocol !== 'grpc' && (traces.length === 0 || traces.includes('otlp')) && !/^https?:\/\//i.test(tracesEndpoint)) {
    process.emitWarning(`${tracesEndpointName}=${JSON.stringify(tracesEndpoint)} is not an http:// or https:// URL: no trace reaches it`, { code: 'LEAD_CHASSIS_OTEL_SETTING_IGNORED' })
  }
  // ESM imports are instrumented through import-in-the-middle's loader hook.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)
  const { NodeSDK, resources } = await import('@opentelemetry/sdk-node')
  const { createInstrumentations, startQuerySpans } = await import('./instrumentations.js')
  const { exportingSpanProcessors } = await import('./span-processors.js')
  const { serviceResourceAttributes } = await import('./service-resource.js')
  const { PooledIdGenerator } = await import('./id-generator.js')
  const { sdkMetricsEnabled, sdkTracerProvider, skipSpanCountMetrics } = await import('./span-count-metrics.js')
  const { trace } = await import('@opentelemetry/api')
  // Without OTEL_SERVICE_NAME a service would say unknown_service:node: it names itself after its entry instead.
  const resource = resources.defaultResource().merge(resources.resourceFromAttributes(serviceResourceAttributes(process.argv[1])))
  // Ids from a pool of random bytes (id-generator.ts): every request that starts a trace pays for two, sampled or not.
  const sdk = new NodeSDK({ resource, spanProcessors: exportingSpanProcessors(), instrumentations: await createInstrumentations(), idGenerator: new PooledIdGenerator() })
  sdk.start()
  // The SDK counts its spans (otel.sdk.span.*) into a no-op meter unless OTEL_NODE_EXPERIMENTAL_SDK_METRICS=true.
  if (!sdkMetricsEnabled()) skipSpanCountMetrics(sdkTracerProvider(trace.getTracerProvider()))
  startQuerySpans()
  process.once('beforeExit', () => { void sdk.shutdown() })
}
