import createError from '@fastify/error'

/** Every error code the data-service's routes raise; the HTTP body carries the same `code`. */
export const DataServiceErrors = {
  IMPORT_BUSY: createError<'IMPORT_BUSY', 429, [number]>('IMPORT_BUSY', 'The import limit of this instance is reached (%d at once); retry later', 429),
  IMPORT_BAD_HEADER: createError<'IMPORT_BAD_HEADER', 400, [string]>('IMPORT_BAD_HEADER', 'The CSV header cannot be read: %s', 400)
} as const
