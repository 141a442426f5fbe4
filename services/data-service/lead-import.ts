import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { CsvError, parse } from 'csv-parse'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import type { ConnectionPool } from '../../plugins/db-pool/index.js'
import { createLeadBodySchema, type LeadInput } from '../domain/lead-schemas.js'

export type ImportFormat = 'csv' | 'ndjson'

export interface Rejection { line: number, reason: string }

export interface ImportReport {
  /** Rows read, rejected ones included. */
  rows: number
  inserted: number
  updated: number
  /** Rows whose lead already held exactly these values (a re-import). */
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
  /** Called after each committed batch with the ids of the leads it changed (inserted or updated). */
  onBatch?: (changedIds: string[]) => Promise<void>
}

interface Row { line: number, record?: Record<string, unknown>, error?: string }

const ajv = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false })
addFormats.default(ajv)
const validateLead = ajv.compile<LeadInput>(createLeadBodySchema)

const SNAKE: Record<string, keyof LeadInput> = { first_name: 'firstName', last_name: 'lastName' }

/** A CSV record is all strings: empty cells are absent (phone: null), score is a number, snake_case headers map. */
function fromCsv (record: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [rawKey, raw] of Object.entries(record)) {
    const key = SNAKE[rawKey] ?? rawKey
    const value = raw.trim()
    if (value === '') {
      if (key === 'phone') out[key] = null
      continue
    }
    out[key] = key === 'score' && /^-?\d+$/.test(value) ? Number(value) : value
  }
  return out
}

const MAX_RECORD_BYTES = 65536

async function * csvRows (input: Readable, onSkip: (r: Rejection) => void): AsyncGenerator<Row> {
  const parser = input.pipe(parse({ columns: true, bom: true, trim: false, skip_empty_lines: true, skip_records_with_error: true, info: true, max_record_size: MAX_RECORD_BYTES }))
  input.once('error', (error) => parser.destroy(error))
  // csv-parse can skip one record twice (each stray quote in it); the row is rejected once.
  let lastSkipped = -1
  parser.on('skip', (error: CsvError & { lines?: number }) => {
    const line = error.lines ?? 0
    if (line !== lastSkipped) onSkip({ line, reason: describeCsvError(error) })
    lastSkipped = line
  })
  for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>, info: { lines: number } }>) {
    yield { line: info.lines, record: fromCsv(record) }
  }
}

async function * ndjsonRows (input: Readable): AsyncGenerator<Row> {
  let line = 0
  for await (const text of createInterface({ input, crlfDelay: Infinity })) {
    line++
    if (text.trim() === '') continue
    try {
      const value: unknown = JSON.parse(text)
      if (value === null || typeof value !== 'object' || Array.isArray(value)) yield { line, error: 'not a JSON object' }
      else yield { line, record: value as Record<string, unknown> }
    } catch {
      yield { line, error: 'not valid JSON' }
    }
  }
}

// Rejection reasons and error messages name the field and what is wrong with it, never the value: a reason is
// returned to the caller, and logged when an import is interrupted, and the value may be a name, an email or a phone.
const LEAD_FIELDS = new Set([...Object.keys(createLeadBodySchema.properties), ...Object.keys(SNAKE)])
// A submitted property name is shown only when it looks like a name (an email used as a key does not).
const SHOWABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/

function describe (errors: typeof validateLead.errors): string {
  const e = errors?.[0]
  if (!e) return 'invalid'
  const params = e.params as { missingProperty?: string, additionalProperty?: string }
  if (e.keyword === 'additionalProperties') {
    const name = String(params.additionalProperty)
    return SHOWABLE_NAME.test(name) ? `unknown field ${name}` : 'an unknown field'
  }
  const field = e.instancePath.replace(/^\//, '') || params.missingProperty || 'row'
  if (e.keyword === 'required') return `${field} is required`
  if (e.keyword === 'enum') return `${field} must be one of ${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).join(', ')}`
  return `${field} ${e.message ?? 'is invalid'}`
}

// One statement per batch: the rows arrive as arrays, a conflict on the natural key (email, product) updates the
// lead only when a value differs, and `xmax = 0` tells an inserted row from an updated one.
const UPSERT = `
INSERT INTO leads (first_name, last_name, email, phone, product, state, source, score)
SELECT f, l, e, p, pr, s, COALESCE(src, 'web'), COALESCE(sc, 0)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[]) AS t(f, l, e, p, pr, s, src, sc)
ON CONFLICT (lower(email), product) DO UPDATE SET
  first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, phone = EXCLUDED.phone, state = EXCLUDED.state,
  source = EXCLUDED.source, score = EXCLUDED.score, updated_at = now()
  WHERE (leads.first_name, leads.last_name, leads.phone, leads.state, leads.source, leads.score)
    IS DISTINCT FROM (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.phone, EXCLUDED.state, EXCLUDED.source, EXCLUDED.score)
RETURNING id, (xmax = 0) AS inserted`

/**
 * Imports leads from a CSV (header row, camelCase or snake_case columns) or NDJSON stream while it streams: rows
 * are validated one by one and written in batches, each in its own transaction, so a failure leaves no batch half
 * written and a re-import (idempotent on email and product) completes the rest. Throws ImportInterruptedError,
 * carrying the report of what was committed, when a batch cannot be written.
 */
export async function importLeads (db: ConnectionPool, input: Readable, format: ImportFormat, options: ImportOptions = {}): Promise<ImportReport> {
  const batchSize = options.batchSize ?? 1000
  const maxRejections = options.maxRejections ?? 1000
  const report: ImportReport = { rows: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0, rejections: [], rejectionsTruncated: false }
  const reject = (r: Rejection): void => {
    report.rejected++
    if (report.rejections.length < maxRejections) report.rejections.push(r)
    else report.rejectionsTruncated = true
  }
  // Keyed by the natural key: a key seen twice flushes the batch first, so the second row updates the first.
  let batch = new Map<string, LeadInput>()
  let firstLine = 0

  const flush = async (): Promise<void> => {
    if (batch.size === 0) return
    const leads = [...batch.values()]
    batch = new Map()
    const column = <T>(f: (l: LeadInput) => T): T[] => leads.map(f)
    try {
      const { rows } = await db.query<{ id: string, inserted: boolean }>(UPSERT, [
        column((l) => l.firstName), column((l) => l.lastName), column((l) => l.email), column((l) => l.phone ?? null),
        column((l) => l.product), column((l) => l.state), column((l) => l.source ?? null), column((l) => l.score ?? null)
      ])
      let inserted = 0
      for (const r of rows) if (r.inserted) inserted++
      report.inserted += inserted
      report.updated += rows.length - inserted
      report.unchanged += leads.length - rows.length
      await options.onBatch?.(rows.map((r) => r.id))
    } catch (error) {
      throw new ImportInterruptedError(finish(report), firstLine, error)
    }
  }

  const rows = format === 'csv' ? csvRows(input, reject) : ndjsonRows(input)
  try {
    for await (const row of rows) {
      if (!row.record) {
        reject({ line: row.line, reason: row.error ?? 'unreadable' })
        continue
      }
      if (!validateLead(row.record)) {
        reject({ line: row.line, reason: describe(validateLead.errors) })
        continue
      }
      const lead = row.record
      const key = `${lead.email.toLowerCase()}|${lead.product}`
      if (batch.has(key)) await flush()
      if (batch.size === 0) firstLine = row.line
      batch.set(key, lead)
      if (batch.size >= batchSize) await flush()
    }
  } catch (error) {
    // The stream failed (too large, aborted by the client): the pending batch is dropped, never half written.
    if (error instanceof ImportInterruptedError) throw error
    throw new ImportInterruptedError(finish(report), firstLine, error)
  }
  await flush()
  return finish(report)
}

// csv-parse's own messages quote the cell they stopped at (`value is "someone@example.com"`).
const CSV_PROBLEMS: Record<string, string> = {
  INVALID_OPENING_QUOTE: 'a quote inside an unquoted value',
  CSV_INVALID_CLOSING_QUOTE: 'characters after a closing quote',
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE: 'characters after a closing quote',
  CSV_QUOTE_NOT_CLOSED: 'a quote that is never closed',
  CSV_RECORD_INCONSISTENT_FIELDS_LENGTH: 'another number of cells than the header row',
  CSV_RECORD_INCONSISTENT_COLUMNS: 'another number of cells than the header row',
  CSV_MAX_RECORD_SIZE: `a record longer than ${MAX_RECORD_BYTES} bytes`
}

/** What csv-parse found wrong, and in which field, without the cell's content. */
function describeCsvError (error: CsvError & { column?: unknown }): string {
  const problem = CSV_PROBLEMS[error.code] ?? `a malformed record (${error.code})`
  const column = error.column
  const where = typeof column === 'string' && LEAD_FIELDS.has(column) ? ` in field ${column}` : typeof column === 'number' ? ` in column ${column + 1}` : ''
  return `unreadable CSV: ${problem}${where}`
}

/**
 * The cause of an interrupted import in words that carry no submitted value: csv-parse's are replaced, the others
 * that can stop an import (DatabaseError, the size limit, a dropped upload) never quote a value.
 */
function describeCause (cause: unknown): string {
  if (cause instanceof CsvError) return describeCsvError(cause)
  return (cause as Error | undefined)?.message ?? 'unknown error'
}

/** Every row read is reported once (rows the CSV parser skipped included), rejections in file order. */
function finish (report: ImportReport): ImportReport {
  report.rows = report.inserted + report.updated + report.unchanged + report.rejected
  report.rejections.sort((a, b) => a.line - b.line)
  return report
}

/**
 * The import stopped: a batch could not be written, or the stream failed (its `cause`). The report holds what
 * earlier batches committed; nothing from `line` on was written.
 */
export class ImportInterruptedError extends Error {
  readonly report: ImportReport
  readonly line: number
  constructor (report: ImportReport, line: number, cause: unknown) {
    super(`the import stopped at the batch starting at line ${line}: ${describeCause(cause)}`, { cause })
    this.name = 'ImportInterruptedError'
    this.report = report
    this.line = line
  }
}
