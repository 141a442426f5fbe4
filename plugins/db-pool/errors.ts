import createError from '@fastify/error'

/** Stable codes of the errors the pool raises; the HTTP body carries the same code. */
export type DatabaseErrorCode =
  | 'DB_UNIQUE_VIOLATION'
  | 'DB_FOREIGN_KEY_VIOLATION'
  | 'DB_CONSTRAINT_VIOLATION'
  | 'DB_INVALID_INPUT'
  | 'DB_SERIALIZATION_FAILURE'
  | 'DB_DEADLOCK'
  | 'DB_QUERY_TIMEOUT'
  | 'DB_UNAVAILABLE'
  | 'DB_COMMIT_OUTCOME_UNKNOWN'
  | 'DB_ERROR'

/**
 * A PostgreSQL or connection error, typed: it carries the SQLSTATE, whether running the same work again can succeed,
 * and the HTTP status a route should answer with. Messages never include row values (they may be personal data).
 */
export class DatabaseError extends Error {
  override readonly name = 'DatabaseError'
  readonly code: DatabaseErrorCode
  readonly sqlState: string | undefined
  readonly retryable: boolean
  readonly statusCode: number
  readonly constraint: string | undefined
  readonly retryAfterSeconds: number | undefined

  constructor (code: DatabaseErrorCode, message: string, opts: { sqlState?: string, retryable: boolean, statusCode: number, constraint?: string, cause?: unknown }) {
    super(message, { cause: opts.cause })
    this.code = code
    this.sqlState = opts.sqlState
    this.retryable = opts.retryable
    this.statusCode = opts.statusCode
    this.constraint = opts.constraint
    this.retryAfterSeconds = opts.statusCode === 503 ? 1 : undefined
  }
}

export const PoolErrors = {
  DB_POOL_INVALID_OPTIONS: createError<'DB_POOL_INVALID_OPTIONS', [string]>('DB_POOL_INVALID_OPTIONS', 'Invalid connection pool options: %s'),
  DB_POOL_CLOSED: createError<'DB_POOL_CLOSED', 503, [string]>('DB_POOL_CLOSED', 'Connection pool "%s" is closed', 503),
  DB_LISTEN_INVALID_CHANNEL: createError<'DB_LISTEN_INVALID_CHANNEL', [string]>('DB_LISTEN_INVALID_CHANNEL', 'A notification channel must be a plain lower-case identifier, not "%s"')
} as const

interface PgLikeError {
  code?: string
  message?: string
  constraint?: string
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
  'Connection closed',
  // pg's client-side query_timeout: the connection is mid-protocol and cannot be reused.
  'Query read timeout'
]

/**
 * The cause of a DB_UNAVAILABLE for a statement not sent: its connection came with too little of the query's time
 * left. The connection is sound and is kept.
 */
export const UNSENT = Object.freeze({ unsent: true })

/** True when the error means the connection (not the statement) failed. */
export function isConnectionError (error: unknown): boolean {
  const e = error as PgLikeError
  if (e instanceof DatabaseError) return e.code === 'DB_UNAVAILABLE' && e.cause !== UNSENT
  if (typeof e?.code === 'string') {
    if (NETWORK_CODES.has(e.code)) return true
    // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections.
    if (e.code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(e.code)) return true
  }
  return typeof e?.message === 'string' && CONNECTION_MESSAGES.some((m) => e.message?.includes(m))
}

/** Maps any error thrown by pg into a DatabaseError. */
export function toDatabaseError (error: unknown): DatabaseError {
  if (error instanceof DatabaseError) return error
  const e = error as PgLikeError
  const sqlState = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
  const constraint = e?.constraint
  const base = { cause: error, ...(sqlState ? { sqlState } : {}), ...(constraint ? { constraint } : {}) }
  if (isConnectionError(error)) {
    return new DatabaseError('DB_UNAVAILABLE', 'The database is unavailable', { ...base, retryable: true, statusCode: 503 })
  }
  switch (sqlState) {
    case '23505': return new DatabaseError('DB_UNIQUE_VIOLATION', `Unique constraint ${constraint ?? ''} violated`.trim(), { ...base, retryable: false, statusCode: 409 })
    case '23503': return new DatabaseError('DB_FOREIGN_KEY_VIOLATION', `Foreign key ${constraint ?? ''} violated`.trim(), { ...base, retryable: false, statusCode: 409 })
    case '23502':
    case '23514':
    case '23P01': return new DatabaseError('DB_CONSTRAINT_VIOLATION', `Constraint ${constraint ?? ''} violated`.trim(), { ...base, retryable: false, statusCode: 400 })
    case '40001': return new DatabaseError('DB_SERIALIZATION_FAILURE', 'Concurrent update conflict; retry the request', { ...base, retryable: true, statusCode: 503 })
    case '40P01': return new DatabaseError('DB_DEADLOCK', 'Deadlock detected; retry the request', { ...base, retryable: true, statusCode: 503 })
    case '57014': return new DatabaseError('DB_QUERY_TIMEOUT', 'The query ran past its time limit and was cancelled', { ...base, retryable: false, statusCode: 503 })
  }
  if (sqlState?.startsWith('22')) return new DatabaseError('DB_INVALID_INPUT', 'Invalid value for the database', { ...base, retryable: false, statusCode: 400 })
  return new DatabaseError('DB_ERROR', 'Database error', { ...base, retryable: false, statusCode: 500 })
}
