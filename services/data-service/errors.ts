import createError from '@fastify/error'

/** Every error code only the data-service raises; the HTTP body carries the same `code`. */
export const DataServiceErrors = {
  IMPORT_BUSY: createError<'IMPORT_BUSY', 429, [number]>('IMPORT_BUSY', 'The import limit of this instance is reached (%d at once); retry later', 429),
  IMPORT_BAD_HEADER: createError<'IMPORT_BAD_HEADER', 400, [string]>('IMPORT_BAD_HEADER', 'The CSV header cannot be read: %s', 400),
  IMPORT_EMPTY: createError<'IMPORT_EMPTY', 400, []>('IMPORT_EMPTY', 'The import holds no records: send one JSON object per line', 400),
  IMPORT_TOO_LARGE: createError<'IMPORT_TOO_LARGE', 413, [number]>('IMPORT_TOO_LARGE', 'An import is at most %d bytes', 413),
  UNSUPPORTED_IMPORT_TYPE: createError<'UNSUPPORTED_IMPORT_TYPE', 415, [string]>('UNSUPPORTED_IMPORT_TYPE', 'Send text/csv or application/x-ndjson, not %s', 415),
  /** The import stopped on the service's side (database, stream): the body adds the line to resume from and the report. */
  IMPORT_INTERRUPTED: createError<'IMPORT_INTERRUPTED', 503, [number, string]>('IMPORT_INTERRUPTED', 'the import stopped; resume it from line %d: %s', 503),
  /** The client's stream failed part-way: the body adds the line to resume from and the report. */
  IMPORT_ABORTED: createError<'IMPORT_ABORTED', 400, [number, string]>('IMPORT_ABORTED', 'the import stopped; resume it from line %d: %s', 400),
  INVALID_RANGE: createError<'INVALID_RANGE', 400, [string, string, number]>('INVALID_RANGE',
    'The range from %s to %s is not a report range: from comes first, and a report covers at most %d days', 400)
} as const
