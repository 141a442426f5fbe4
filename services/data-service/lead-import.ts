import type { Readable } from 'node:stream'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { addSchemaRules } from '@lead-chassis/plugins/chassis'
import { DatabaseError, type ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { PHONE_PATTERN, PHONE_RULE, TEXT_PATTERN, createLeadBodySchema, type LeadInput } from '../domain/lead-schemas.js'
import { splitCsvLine } from './csv-line.js'
import { DataServiceErrors } from './errors.js'
import { boundedLines, type ImportLine } from './import-lines.js'

export type ImportFormat = 'csv' | 'ndjson'

export interface Rejection { line: number, reason: string }

export interface ImportReport {
  /** Records read (one per non-blank line, the CSV header apart), rejected ones included. */
  rows: number
  inserted: number
  updated: number
  /** Rows whose lead already held every value they supplied (a re-import). */
  unchanged: number
  rejected: number
  /** Each rejected row, by its line in the file, up to the configured number. */
  rejections: Rejection[]
  rejectionsTruncated: boolean
}

export interface ImportOptions {
  /** Rows written per transaction. @default 1000 */
  batchSize?: number
  /** Rejections listed in the report at most (all are counted). @default 1000 */
  maxRejections?: number
  /** Bytes of one record (one line) at most; a longer one is rejected without being held. @default 65536 */
  maxRecordBytes?: number
  /** Called after each committed batch with the ids of the leads it changed (inserted or updated). */
  onBatch?: (changedIds: string[]) => Promise<void>
  /** Who imports, recorded in the activity trail of each lead the import creates or changes (e.g. `key:<id>`). */
  actor?: string | null
  /**
   * Stops the import at once: it rejects with ImportInterruptedError (its cause the signal's reason) naming the first
   * line not known to be written. A batch being written then goes on, and may commit after; the error's `background`
   * settles when it has.
   */
  signal?: AbortSignal
}

/**
 * The fields a record may leave out. One left out (a column missing from the CSV header, a key missing from an NDJSON
 * record) leaves an existing lead's value as it is (routing's score among them) and gives a new lead the default.
 */
const OPTIONAL = ['phone', 'source', 'score'] as const
type OptionalField = typeof OPTIONAL[number]

interface Row { line: number, record?: Record<string, unknown>, error?: string, absent?: OptionalField[] }
interface Pending { line: number, lead: LeadInput, absent: OptionalField[] }

/** What a lead is unique by: its email, case-insensitive, and its product (the leads table's unique index). */
function naturalKey (lead: LeadInput): string {
  return `${lead.email.toLowerCase()}|${lead.product}`
}

const ajv = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false })
addFormats.default(ajv)
// The rules the services' own validation has (the lead schema's `wellFormed`), so a row is refused as a request is.
addSchemaRules(ajv)
const validateLead = ajv.compile<LeadInput>(createLeadBodySchema)

const SNAKE: Record<string, keyof LeadInput> = { first_name: 'firstName', last_name: 'lastName' }
// A column or key the caller named is echoed (in a header error, which is logged, or a rejection) only when it is
// one of these: anything else may be a lead's name sent as a key.
const FIELDS = Object.keys(createLeadBodySchema.properties)
const KNOWN_COLUMNS: ReadonlySet<string> = new Set([...FIELDS, ...Object.keys(SNAKE)])
const UNKNOWN_FIELD = `an unknown field (the fields are ${FIELDS.join(', ')})`
// A lead has 8 fields; an export may carry some columns more, which are read only when empty (a value in an
// unknown column rejects its row). A header far wider is no lead file, and each of its rows would cost its width.
const MAX_COLUMNS = 64
const CONTROL = /\p{Cc}/u
const NOT_UTF8 = 'not valid UTF-8 (send the file UTF-8 encoded)'

/**
 * A CSV record is all strings: score is a number, snake_case headers map, an empty cell is left out of the record
 * (phone: null). Its column was sent all the same: an empty optional cell gives the default (see `absent`).
 */
function fromCsv (columns: string[], cells: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  columns.forEach((rawKey, i) => {
    const key = SNAKE[rawKey] ?? rawKey
    const value = (cells[i] ?? '').trim()
    if (value === '') {
      if (key === 'phone') out[key] = null
      return
    }
    out[key] = key === 'score' && /^-?\d+$/.test(value) ? Number(value) : value
  })
  return out
}

/** A field by its header column when that is a known one, else by its position (from 1). */
function fieldName (columns: string[], index: number): string {
  const column = columns[index]
  return column !== undefined && KNOWN_COLUMNS.has(column) ? column : String(index + 1)
}

// Every line is one record in both formats, so each is counted once and rejected at most once, whatever it holds.
async function * csvRows (lines: AsyncIterable<ImportLine>, tooLong: string): AsyncGenerator<Row> {
  let columns: string[] | undefined
  let absent: OptionalField[] = []
  for await (const { line, text, notUtf8 } of lines) {
    if (!columns) {
      if (text === undefined) throw new DataServiceErrors.IMPORT_BAD_HEADER(notUtf8 ? NOT_UTF8 : tooLong)
      // A file whose lines end with a lone CR (classic Mac) is one line: its records would be read as header cells.
      if (text.includes('\r')) throw new DataServiceErrors.IMPORT_BAD_HEADER('its lines end with a lone CR; end them with LF or CRLF')
      const header = splitCsvLine(text)
      if (!Array.isArray(header)) throw new DataServiceErrors.IMPORT_BAD_HEADER(header.error)
      if (header.length > MAX_COLUMNS) throw new DataServiceErrors.IMPORT_BAD_HEADER(`it has ${header.length} columns; an import reads at most ${MAX_COLUMNS}`)
      columns = header.map((c) => c.trim())
      // A repeated column (also firstName beside first_name) would overwrite the first one's cell without a word.
      const keys = columns.map((c) => SNAKE[c] ?? c)
      const seen = new Map<string, number>()
      for (const [i, key] of keys.entries()) {
        const first = seen.get(key)
        if (first !== undefined) {
          throw new DataServiceErrors.IMPORT_BAD_HEADER(KNOWN_COLUMNS.has(key) ? `column ${key} appears twice` : `columns ${first + 1} and ${i + 1} have the same name`)
        }
        seen.set(key, i)
      }
      absent = OPTIONAL.filter((f) => !keys.includes(f))
      continue
    }
    if (text === undefined) {
      yield { line, error: notUtf8 ? NOT_UTF8 : tooLong }
      continue
    }
    const cells = splitCsvLine(text)
    // The field is named by its header column: which field and why, never what it held.
    if (!Array.isArray(cells)) yield { line, error: `unreadable CSV: ${cells.error} in field ${fieldName(columns, cells.field)}` }
    else if (cells.length !== columns.length) yield { line, error: `unreadable CSV: ${cells.length} fields where the header has ${columns.length}` }
    else yield { line, record: fromCsv(columns, cells), absent }
  }
  // Nothing to read is a caller's mistake (a file not attached, a stream that never flowed), not an import of 0 rows.
  if (!columns) throw new DataServiceErrors.IMPORT_BAD_HEADER('the body is empty (send a header line, then one line per lead)')
}

async function * ndjsonRows (lines: AsyncIterable<ImportLine>, tooLong: string): AsyncGenerator<Row> {
  let records = 0
  for await (const { line, text, notUtf8 } of lines) {
    records++
    if (text === undefined) {
      yield { line, error: notUtf8 ? NOT_UTF8 : tooLong }
      continue
    }
    try {
      const value: unknown = JSON.parse(text)
      if (value === null || typeof value !== 'object' || Array.isArray(value)) yield { line, error: 'not a JSON object' }
      else yield { line, record: value as Record<string, unknown>, absent: OPTIONAL.filter((f) => !Object.hasOwn(value, f)) }
    } catch {
      yield { line, error: 'not valid JSON' }
    }
  }
  // As a CSV without its header: a body of no records (blank lines only) is refused rather than reported as 0 rows.
  if (records === 0) throw new DataServiceErrors.IMPORT_EMPTY()
}

/** A byte order mark opens a file, not its first record. */
async function * withoutBom (lines: AsyncIterable<ImportLine>): AsyncGenerator<ImportLine> {
  for await (const l of lines) yield l.line === 1 && l.text?.startsWith('\uFEFF') ? { line: 1, text: l.text.slice(1) } : l
}

/** Names the field and what is wrong with it, never its value (it may be personal data). */
function describe (errors: typeof validateLead.errors, record: Record<string, unknown>): string {
  const e = errors?.[0]
  if (!e) return 'invalid'
  const field = e.instancePath.replace(/^\//, '') || (e.params as { missingProperty?: string, additionalProperty?: string }).missingProperty || (e.params as { additionalProperty?: string }).additionalProperty || 'row'
  if (e.keyword === 'required') return `${field} is required`
  // An additional property is never a lead's field: the message lists them instead of echoing the caller's key.
  if (e.keyword === 'additionalProperties') return UNKNOWN_FIELD
  if (e.keyword === 'enum') return `${field} must be one of ${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).join(', ')}`
  if (e.keyword === 'pattern' && (e.params as { pattern?: string }).pattern === TEXT_PATTERN) {
    return CONTROL.test(String(record[field])) ? `${field} must not contain control characters (NUL, line breaks, tabs)` : `${field} must not be blank`
  }
  if (e.keyword === 'pattern' && (e.params as { pattern?: string }).pattern === PHONE_PATTERN) return `${field} ${PHONE_RULE}`
  return `${field} ${e.message ?? 'is invalid'}`
}

// An optional field as the update writes it: the lead's own value when the row left the field out, else the row's.
// The row cannot be reached from DO UPDATE, only the values it would have inserted (EXCLUDED, defaults applied):
// $9 names the fields each row left out, by email then product, and holds only rows that left one out.
const merged = (field: OptionalField): string =>
  `CASE WHEN ($9::jsonb -> EXCLUDED.email -> EXCLUDED.product) ? '${field}' THEN leads.${field} ELSE EXCLUDED.${field} END`

// One statement per batch: the rows arrive as arrays, a conflict on the natural key (email, product) updates the
// lead only when a value it supplied differs, and `xmax = 0` tells an inserted row from an updated one. Each lead
// written gets its activity in the same statement, as the api's writes do: without it, what a leaked key with
// leads:import created or overwrote could not be told from anything else.
const UPSERT = `
WITH written AS (
INSERT INTO leads (first_name, last_name, email, phone, product, state, source, score)
SELECT f, l, e, p, pr, s, COALESCE(src, 'web'), COALESCE(sc, 0)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[]) AS t(f, l, e, p, pr, s, src, sc)
ON CONFLICT (lower(email), product) DO UPDATE SET
  first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, state = EXCLUDED.state,
  phone = ${merged('phone')}, source = ${merged('source')}, score = ${merged('score')}, updated_at = now()
  WHERE (leads.first_name, leads.last_name, leads.state, leads.phone, leads.source, leads.score)
    IS DISTINCT FROM (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.state, ${merged('phone')}, ${merged('source')}, ${merged('score')})
RETURNING id, (xmax = 0) AS inserted
), trail AS (
INSERT INTO lead_activities (lead_id, type, details, actor)
SELECT id, CASE WHEN inserted THEN 'created' ELSE 'updated' END, '{"via":"import"}'::jsonb, $10 FROM written
)
SELECT id, inserted FROM written`

/** `{ email: { product: [fields left out] } }` for the rows of a batch that left a field out. */
function leftOut (part: Pending[]): string {
  const out: Record<string, Record<string, OptionalField[]>> = {}
  for (const { lead, absent } of part) if (absent.length > 0) (out[lead.email] ??= {})[lead.product] = absent
  return JSON.stringify(out)
}

/**
 * Imports leads from a CSV (header row, camelCase or snake_case columns) or NDJSON stream while it streams: rows
 * are validated one by one and written in batches, each in its own transaction, so a failure leaves no batch half
 * written and a re-import (idempotent on email and product) completes the rest. Throws ImportInterruptedError,
 * carrying the report of what was committed, when a batch cannot be written.
 */
export async function importLeads (db: ConnectionPool, input: Readable, format: ImportFormat, options: ImportOptions = {}): Promise<ImportReport> {
  const batchSize = options.batchSize ?? 1000
  const maxRejections = options.maxRejections ?? 1000
  const maxRecordBytes = options.maxRecordBytes ?? 65536
  const report: ImportReport = { rows: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0, rejections: [], rejectionsTruncated: false }
  const reject = (r: Rejection): void => {
    report.rejected++
    if (report.rejections.length < maxRejections) report.rejections.push(r)
    else report.rejectionsTruncated = true
  }
  // Keyed by the natural key: a key seen twice flushes the batch first, so the second row updates the first.
  let batch = new Map<string, Pending>()
  let firstLine = 0
  /** The line of the last row read, written or rejected: with no batch pending, the stream failed after it. */
  let lastLine = 0

  // A batch is one statement, and each row it writes stays locked until it ends: rows are written in the order of
  // their natural key, so two imports of the same leads in other orders wait for each other instead of deadlocking.
  const upsert = async (part: Pending[]): Promise<void> => {
    const ordered = part.map((p) => ({ key: naturalKey(p.lead), lead: p.lead })).sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
    const column = <T>(f: (l: LeadInput) => T): T[] => ordered.map((p) => f(p.lead))
    const { rows } = await db.query<{ id: string, inserted: boolean }>(UPSERT, [
      column((l) => l.firstName), column((l) => l.lastName), column((l) => l.email), column((l) => l.phone ?? null),
      column((l) => l.product), column((l) => l.state), column((l) => l.source ?? null), column((l) => l.score ?? null),
      leftOut(part), options.actor ?? null
    ])
    let inserted = 0
    for (const r of rows) if (r.inserted) inserted++
    report.inserted += inserted
    report.updated += rows.length - inserted
    report.unchanged += part.length - rows.length
    await options.onBatch?.(rows.map((r) => r.id))
  }

  // A batch the database refuses for its data is written again in halves, down to the one row it refuses, which
  // is rejected alone: one poison row costs about 2 log2(batch) statements, and the rest of the file still goes in.
  // Halves are written in file order, so when the database fails otherwise nothing from `part[0].line` on is written.
  const write = async (part: Pending[]): Promise<void> => {
    try {
      await upsert(part)
    } catch (error) {
      const first = part[0] as Pending
      if (!refusedForItsData(error)) throw new ImportInterruptedError(finish(report), first.line, error)
      if (part.length === 1) {
        reject({ line: first.line, reason: `refused by the database: ${(error as DatabaseError).message} (SQLSTATE ${(error as DatabaseError).sqlState ?? ''})` })
        return
      }
      const half = Math.ceil(part.length / 2)
      await write(part.slice(0, half))
      await write(part.slice(half))
    }
  }

  const flush = async (): Promise<void> => {
    if (batch.size === 0) return
    const part = [...batch.values()]
    batch = new Map()
    await write(part)
  }

  const tooLong = `record longer than ${maxRecordBytes} bytes`
  const lines = withoutBom(boundedLines(input, maxRecordBytes))
  const rows = format === 'csv' ? csvRows(lines, tooLong) : ndjsonRows(lines, tooLong)
  /** The first line of the batch being written, if one is; since when; and the report before it. */
  let writingFrom: number | undefined
  let writingSince = 0
  let beforeWriting: ImportReport | undefined
  // Stopped by the signal: nothing more is read or written, whatever lines the reader still holds.
  const stopIfAborted = (): void => {
    if (options.signal?.aborted === true) throw new ImportInterruptedError(finish(report), resumeLine(), options.signal.reason)
  }
  const flushing = async (): Promise<void> => {
    stopIfAborted()
    writingFrom = batch.size > 0 ? firstLine : undefined
    writingSince = performance.now()
    beforeWriting = { ...report, rejections: [...report.rejections] }
    try {
      await flush()
    } finally {
      writingFrom = undefined
      beforeWriting = undefined
    }
  }
  const run = async (): Promise<ImportReport> => {
    try {
      for await (const row of rows) {
        stopIfAborted()
        lastLine = row.line
        if (!row.record) {
          reject({ line: row.line, reason: row.error ?? 'unreadable' })
          continue
        }
        if (!validateLead(row.record)) {
          reject({ line: row.line, reason: describe(validateLead.errors, row.record) })
          continue
        }
        const lead = row.record
        const key = naturalKey(lead)
        if (batch.has(key)) await flushing()
        if (batch.size === 0) firstLine = row.line
        batch.set(key, { line: row.line, lead, absent: row.absent ?? [] })
        if (batch.size >= batchSize) await flushing()
      }
    } catch (error) {
      // The stream failed (too large, aborted by the client): the pending batch is dropped, never half written.
      if (error instanceof ImportInterruptedError) throw error
      throw new ImportInterruptedError(finish(report), resumeLine(), error)
    }
    await flushing()
    return finish(report)
  }
  // The pending batch is dropped: resume at its first line. None pending (the last one written): the rows up to the
  // last one read are done, written or rejected, so not at the written batch's first line.
  // Nothing read yet: from the top.
  const resumeLine = (): number => writingFrom ?? (batch.size > 0 ? firstLine : lastLine === 0 ? 1 : lastLine + 1)
  const signal = options.signal
  if (signal === undefined) return run()
  const running = run()
  return await new Promise<ImportReport>((resolveRun, rejectRun) => {
    const onAbort = (): void => {
      // What is left of the run (a batch being written) goes on without anyone waiting for its verdict.
      const background = writingFrom === undefined ? undefined : running.then(() => {}, () => {})
      if (background === undefined) running.catch(() => {})
      // With a batch being written, the report as it stood before it: halves of it written, or its rows counted
      // before its cache invalidation, would be counted again by the re-import from its first line.
      const error = new ImportInterruptedError(finish({ ...(beforeWriting ?? report), rejections: [...(beforeWriting ?? report).rejections] }), resumeLine(), signal.reason)
      if (background !== undefined) {
        error.background = background
        error.writingForMs = performance.now() - writingSince
      }
      rejectRun(error)
    }
    if (signal.aborted) {
      onAbort()
      return
    }
    signal.addEventListener('abort', onAbort, { once: true })
    running.then(resolveRun, rejectRun).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

/**
 * True when PostgreSQL refused the statement for a value it holds (data exception 22xxx, integrity constraint
 * 23xxx), so a smaller part can succeed; a connection or timeout failure is not the rows' fault.
 */
function refusedForItsData (error: unknown): boolean {
  if (!(error instanceof DatabaseError) || error.code === 'DB_UNAVAILABLE') return false
  const sqlState = error.sqlState ?? ''
  return sqlState.startsWith('22') || sqlState.startsWith('23')
}

/** Every record read is reported once, rejections in file order. */
function finish (report: ImportReport): ImportReport {
  report.rows = report.inserted + report.updated + report.unchanged + report.rejected
  report.rejections.sort((a, b) => a.line - b.line)
  return report
}

/**
 * The import stopped: a batch could not be written, or the stream failed (its `cause`). The report holds what
 * earlier batches committed; nothing from `line` on was written, unless the connection failed after PostgreSQL
 * committed the batch at `line` and before its answer came (its outcome unknown here), or the import was stopped by
 * its signal while that batch was being written (it goes on, `background`). A re-import from `line` is idempotent
 * either way.
 */
export class ImportInterruptedError extends Error {
  readonly report: ImportReport
  readonly line: number
  /** Stopped by the signal while a batch was written: settles once that batch has committed or failed. */
  background?: Promise<void>
  /** How long that batch had been written for. */
  writingForMs?: number
  constructor (report: ImportReport, line: number, cause: unknown) {
    super(`the import stopped; resume it from line ${line}: ${(cause as Error).message}`, { cause })
    this.name = 'ImportInterruptedError'
    this.report = report
    this.line = line
  }
}
