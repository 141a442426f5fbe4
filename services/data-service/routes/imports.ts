import { Readable, Transform, finished } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ChassisErrors, errorBodySchema, parseMediaType, takeRequestTimeout, withBodyDetails } from '@lead-chassis/plugins/chassis'
import { ALL_LISTS_TAG, REPORT_TAGS, leadKey } from '../../domain/lead-cache.js'
import { DataServiceErrors } from '../errors.js'
import { ImportInterruptedError, importLeads, type ImportFormat } from '../lead-import.js'

export interface ImportRoutesOptions {
  maxBytes: number
  batchSize: number
  maxRejections: number
  /** Bytes of one record at most. */
  maxRecordBytes: number
  /** Imports running at once on this instance at most. */
  maxConcurrent: number
  /** The server's REQUEST_TIMEOUT_MS: an import whose body has not all arrived by then is answered before it. */
  requestTimeoutMs: number
}

// What a busy instance asks the caller to wait: an import of 100,000 rows takes about 2.5 s here (bench:import).
const BUSY_RETRY_AFTER_SECONDS = 5
// Node answers a request whose body has not all arrived within REQUEST_TIMEOUT_MS 408 itself, checking every second:
// an import still reading by then answers this long before, with its report.
const ANSWER_BEFORE_TIMEOUT_MS = 2000
// A batch takes some 20 ms here; one written for this long when the time runs out is what held the upload back.
const SLOW_BATCH_MS = 1000

const FORMATS: Record<string, ImportFormat> = { 'text/csv': 'csv', 'application/x-ndjson': 'ndjson', 'application/ndjson': 'ndjson' }

const reportSchema = {
  type: 'object',
  properties: {
    rows: { type: 'integer' },
    inserted: { type: 'integer' },
    updated: { type: 'integer' },
    unchanged: { type: 'integer' },
    rejected: { type: 'integer' },
    rejections: { type: 'array', items: { type: 'object', properties: { line: { type: 'integer' }, reason: { type: 'string' } } } },
    rejectionsTruncated: { type: 'boolean' }
  }
} as const

/** A stream that fails with 413 once more than `max` bytes went through it. */
function byteLimit (max: number): Transform {
  let seen = 0
  return new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      seen += chunk.length
      if (seen > max) callback(new DataServiceErrors.IMPORT_TOO_LARGE(max))
      else callback(null, chunk)
    }
  })
}

/** `/data/v1/imports`: bulk import of leads, streamed (CSV or NDJSON), idempotent on email and product. */
export async function importRoutes (app: FastifyInstance, opts: ImportRoutesOptions): Promise<void> {
  // The body is handed over as the raw stream: it is parsed and written while it arrives, never buffered whole.
  app.addContentTypeParser(Object.keys(FORMATS), (_request, payload, done) => { done(null, payload) })
  // Memory per import is bounded (one record, one batch); the number of imports running at once bounds the sum.
  let running = 0

  app.post('/leads', {
    config: { requiredScope: 'leads:import', errorCodes: { 400: ['IMPORT_ABORTED', 'IMPORT_BAD_HEADER', 'IMPORT_EMPTY'], 408: ['REQUEST_TIMEOUT'], 413: ['IMPORT_TOO_LARGE'], 415: ['UNSUPPORTED_IMPORT_TYPE', 'UNSUPPORTED_MEDIA_TYPE'], 429: ['IMPORT_BUSY'], 503: ['IMPORT_INTERRUPTED'] } },
    schema: { response: { 200: reportSchema, 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 408: errorBodySchema, 413: errorBodySchema, 415: errorBodySchema, 429: errorBodySchema } }
  }, async (request, reply) => {
    const header = request.headers['content-type'] ?? ''
    const mediaType = parseMediaType(header)
    // Refused before a row is read: rows in another charset would be read as UTF-8, the ASCII ones imported and each
    // accented one rejected, leaving the file half imported. The body is not read: the connection closes after the
    // answer, as for IMPORT_TOO_LARGE below.
    if (header !== '' && (mediaType === undefined || !mediaType.utf8)) {
      void reply.header('connection', 'close')
      throw new ChassisErrors.UNSUPPORTED_MEDIA_TYPE(mediaType === undefined ? 'the Content-Type is malformed' : 'an import must be UTF-8 (charset=utf-8, us-ascii, or no charset)')
    }
    const format = FORMATS[mediaType?.type ?? '']
    if (!format || !(request.body instanceof Readable)) throw new DataServiceErrors.UNSUPPORTED_IMPORT_TYPE(mediaType?.type ?? 'nothing')
    const declared = Number(request.headers['content-length'] ?? 0)
    // Answered before the body is read: the connection closes after the answer, so the rest of the body is never
    // read as a next request nor held open until REQUEST_TIMEOUT_MS answers it a second time.
    if (declared > opts.maxBytes) {
      void reply.header('connection', 'close')
      throw new DataServiceErrors.IMPORT_TOO_LARGE(opts.maxBytes)
    }
    if (running >= opts.maxConcurrent) {
      void reply.header('retry-after', String(BUSY_RETRY_AFTER_SECONDS)).header('connection', 'close')
      throw new DataServiceErrors.IMPORT_BUSY(opts.maxConcurrent)
    }
    running++
    // An import answered while a batch was being written keeps its place until that batch is done.
    const held: { background?: Promise<void> } = {}
    try {
      return await runImport(request, reply, format, held)
    } finally {
      if (held.background) void held.background.finally(() => { running-- })
      else running--
    }
  })

  const runImport = async (request: FastifyRequest, reply: FastifyReply, format: ImportFormat, held: { background?: Promise<void> }): Promise<unknown> => {
    // The source is never destroyed from here (an error on the request stream would go unheard): a failure reaches
    // the import through the limiter, and whatever the client still sends is drained.
    const source = request.body as Readable
    const input = byteLimit(opts.maxBytes)
    // The request stream failing is the client's doing (it dropped the connection): not a fault of this service.
    // finished() hears it even when it came before this handler listened (the client hung up while a hook waited on
    // Redis or PostgreSQL): such a stream emits nothing more, and the import would wait on it, and hold its place
    // under IMPORT_MAX_CONCURRENT, for the life of the process.
    let clientFailed = false
    finished(source, (error) => {
      if (error === undefined || error === null) return
      clientFailed = true
      input.destroy(error)
    })
    input.once('error', () => source.resume())
    source.pipe(input)
    // Node would answer 408 on its own once REQUEST_TIMEOUT_MS has passed with the body still arriving (a database
    // slow to take the batches holds the client back; so does a client slow to send), and the caller would get no
    // report. Shortly before, the import stops and answers with what it wrote and the line to resume from: 503 when
    // the service was behind (a batch written for SLOW_BATCH_MS or more, or input read and waiting), 408 when the
    // client was.
    const stop = new AbortController()
    let waitingInput = false
    const timeUp = (): void => {
      // `complete` is false while the body arrives (an injected request has none: it arrived whole).
      if (request.raw.complete !== false || stop.signal.aborted) return
      waitingInput = input.writableLength > 0 || input.readableLength > 0 || source.readableLength > 0
      const reason = new ChassisErrors.REQUEST_TIMEOUT(opts.requestTimeoutMs)
      stop.abort(reason)
      input.destroy(reason)
    }
    const deadline = setTimeout(timeUp, Math.max(0, Math.max(opts.requestTimeoutMs - ANSWER_BEFORE_TIMEOUT_MS, opts.requestTimeoutMs / 2) - reply.elapsedTime))
    // Counted from when this handler began, the deadline above can come after Node's, which counts from the request's
    // first byte (headers sent slowly, a wait in the hooks): Node's then stops the import the same way. Held until the
    // answer has gone (takeRequestTimeout releases it then): Node's coming between the import's stop and its answer
    // would otherwise write the plain 408 in its place.
    takeRequestTimeout(request.raw, reply.raw, timeUp)
    try {
      const report = await importLeads(app.db, input, format, {
        signal: stop.signal,
        batchSize: opts.batchSize,
        maxRejections: opts.maxRejections,
        maxRecordBytes: opts.maxRecordBytes,
        actor: request.apiKey ? `key:${request.apiKey.id}` : null,
        // Each committed batch reaches every service's cache: the leads it changed, every list, the reports.
        onBatch: (ids) => app.cache.invalidate({ keys: ids.map(leadKey), tags: [ALL_LISTS_TAG, REPORT_TAGS.leads] })
      })
      request.log.info({ import: { ...report, rejections: report.rejections.length } }, 'leads imported')
      return report
    } catch (error) {
      if (!(error instanceof ImportInterruptedError)) throw error
      if (error.background) held.background = error.background
      // What was committed stays (a re-import completes the rest); the answer says how far it got.
      const cause = error.cause as { statusCode?: number, code?: string, message?: string } | undefined
      // Neither the error (its report lists every rejection) nor its cause chain is logged whole: a cause from the
      // CSV parser quotes the cell it stopped at. The message says what and where, without values.
      const { rejections: _listed, ...counts } = error.report
      request.log.warn({ line: error.line, cause: { type: (error.cause as Error | undefined)?.name, code: cause?.code }, import: counts }, `import interrupted: ${error.message}`)
      const details = { line: error.line, report: error.report }
      if (stop.signal.aborted) {
        // The rest of the body is not read: the connection closes after the answer.
        void reply.header('connection', 'close')
        // A batch written for a while, or read input waiting for the import: the service was behind. A batch just
        // begun is the normal pace of an import whose client sends too slowly.
        if ((error.writingForMs ?? 0) >= SLOW_BATCH_MS || waitingInput) {
          throw withBodyDetails(new DataServiceErrors.IMPORT_INTERRUPTED(error.line, 'the database took the rows more slowly than the request\'s time allows'), details)
        }
        throw withBodyDetails(new ChassisErrors.REQUEST_TIMEOUT(opts.requestTimeoutMs), details)
      }
      // The client's doing (a stream over the size limit, a dropped connection) keeps its own code or is
      // IMPORT_ABORTED; anything else is this service's.
      const clientCode = cause?.statusCode !== undefined && cause.statusCode < 500
      if (clientFailed || clientCode) {
        throw withBodyDetails(clientCode && cause?.code !== undefined ? cause as Error : new DataServiceErrors.IMPORT_ABORTED(error.line, cause?.message ?? ''), details)
      }
      throw withBodyDetails(new DataServiceErrors.IMPORT_INTERRUPTED(error.line, (error.cause as Error | undefined)?.message ?? ''), details)
    } finally {
      clearTimeout(deadline)
    }
  }
}
