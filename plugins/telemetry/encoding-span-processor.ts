import { ROOT_CONTEXT, context, diag, TraceFlags, type Context } from '@opentelemetry/api'
import { core, type tracing } from '@opentelemetry/sdk-node'
import { OtlpJsonBatch } from './otlp-json.js'

/** The batching settings, as the SDK's batch processor read them from OTEL_BSP_* (its defaults: 512, 2048, 5 s, 30 s). */
export interface EncodingSpanProcessorOptions {
  maxExportBatchSize: number
  maxQueueSize: number
  scheduledDelayMillis: number
  exportTimeoutMillis: number
}

// Exports and their timers run in no request's context (one would be kept alive by them, span and all), with tracing
// suppressed, so that the export's own HTTP request makes no span.
const EXPORT_CONTEXT = core.suppressTracing(ROOT_CONTEXT)

/**
 * The SDK's batch processor, for the OTLP/HTTP JSON exporter, with spans written to text as they end: the SDK's
 * keeps every ended span object (attributes, events, resource and scope references) until its batch is exported,
 * up to 5 s later, long enough for V8 to move them into the old generation, whose collections then pay for them;
 * here a span's text is written at `onEnd` (`OtlpJsonBatch.add`, the same bytes) and the span dies young.
 * Batching as the SDK's: a batch goes when it holds `maxExportBatchSize` spans or `scheduledDelayMillis` after
 * its first span, one export at a time; spans beyond `maxQueueSize` (the filling batch, those waiting and the one
 * being exported: the memory held is bounded, even while the collector is slow) are
 * dropped and counted in one warning; an export that outlives `exportTimeoutMillis` no longer holds the next one.
 * The exporter (its transport, headers, timeout, retries and compression) is the SDK's, given the written batch.
 */
export class EncodingSpanProcessor implements tracing.SpanProcessor {
  readonly #exporter: tracing.SpanExporter
  readonly #options: EncodingSpanProcessorOptions
  #filling = new OtlpJsonBatch()
  readonly #waiting: OtlpJsonBatch[] = []
  #queued = 0
  #dropped = 0
  #exporting = false
  #timer: NodeJS.Timeout | undefined
  #shutdown: Promise<void> | undefined

  constructor (exporter: tracing.SpanExporter, options: EncodingSpanProcessorOptions) {
    this.#exporter = exporter
    this.#options = { ...options, maxExportBatchSize: Math.max(1, Math.min(options.maxExportBatchSize, options.maxQueueSize)) }
  }

  onStart (_span: tracing.Span, _context: Context): void {}

  onEnd (span: tracing.ReadableSpan): void {
    if (this.#shutdown !== undefined || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    if (this.#queued >= this.#options.maxQueueSize) {
      if (this.#dropped === 0) diag.debug('maxQueueSize reached, dropping spans')
      this.#dropped++
      return
    }
    if (this.#dropped > 0) {
      diag.warn(`Dropped ${this.#dropped} spans because maxQueueSize reached`)
      this.#dropped = 0
    }
    this.#filling.add(span)
    this.#queued++
    if (this.#filling.length >= this.#options.maxExportBatchSize) {
      this.#seal()
      this.#next()
    } else if (this.#timer === undefined && !this.#exporting) {
      this.#startTimer()
    }
  }

  /** Exports every span ended so far, and waits for those exports and the ones in flight. */
  async forceFlush (): Promise<void> {
    if (this.#shutdown !== undefined) return await this.#shutdown
    await this.#flushAll()
  }

  async shutdown (): Promise<void> {
    this.#shutdown ??= this.#flushAll().then(async () => { await this.#exporter.shutdown() })
    await this.#shutdown
  }

  /** Moves the filling batch, if it holds any span, to the batches waiting for export. */
  #seal (): void {
    this.#clearTimer()
    if (this.#filling.length === 0) return
    this.#waiting.push(this.#filling)
    this.#filling = new OtlpJsonBatch()
  }

  /** Starts the next export unless one is running; when it is done, the one after, or the timer for the filling batch. */
  #next (): void {
    if (this.#exporting) return
    const batch = this.#waiting.shift()
    if (batch === undefined) return
    this.#exporting = true
    context.with(EXPORT_CONTEXT, () => {
      void this.#export(batch).catch((error: unknown) => { core.globalErrorHandler(error as Error) }).finally(() => {
        this.#exporting = false
        if (this.#waiting.length > 0) return this.#next()
        if (this.#filling.length > 0 && this.#timer === undefined) this.#startTimer()
      })
    })
  }

  /** The filling batch goes `scheduledDelayMillis` from now. */
  #startTimer (): void {
    this.#timer = context.with(EXPORT_CONTEXT, () => setTimeout(() => {
      this.#timer = undefined
      this.#seal()
      this.#next()
    }, this.#options.scheduledDelayMillis))
    this.#timer.unref()
  }

  async #flushAll (): Promise<void> {
    this.#seal()
    const batches = this.#waiting.splice(0)
    await Promise.all(batches.map(async (batch) => { await this.#export(batch) }))
  }

  /** One batch to the exporter; settles when the exporter answers or `exportTimeoutMillis` passes, whichever is first. */
  async #export (batch: OtlpJsonBatch): Promise<void> {
    await context.with(EXPORT_CONTEXT, async () => { await this.#exportIn(batch) })
  }

  async #exportIn (batch: OtlpJsonBatch): Promise<void> {
    try {
      const pending = batch.pendingResources()
      if (pending.length > 0) await Promise.all(pending)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('Timeout')) }, this.#options.exportTimeoutMillis)
        // The exporter hands its items to its serializer, which the chassis's is (span-processors.ts): it takes the
        // written batch as it is.
        this.#exporter.export(batch as unknown as tracing.ReadableSpan[], (result) => {
          clearTimeout(timer)
          if (result.code === core.ExportResultCode.SUCCESS) resolve()
          else reject(result.error ?? new Error('EncodingSpanProcessor: span export failed'))
        })
      })
    } finally {
      this.#queued -= batch.length
    }
  }

  #clearTimer (): void {
    if (this.#timer === undefined) return
    clearTimeout(this.#timer)
    this.#timer = undefined
  }
}
