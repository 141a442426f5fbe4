import { tracingChannel } from 'node:diagnostics_channel'

/**
 * The query seam: every query of every pool is published here. Subscribers (query tracing, spans) get the context;
 * with nobody subscribed a query pays one boolean check. Parameter values are never put in the context.
 */
export interface QueryContext {
  pool: string
  text: string
  paramCount: number
  /** The connection the query runs on (for database spans). */
  database: string | undefined
  host: string | undefined
  port: number | undefined
  /** Set when the query resolves: the result the caller gets, rows included. Subscribers record counts, never rows. */
  result?: { rowCount: number | null }
  /** Set when the query rejects. */
  error?: unknown
}

export const QUERY_CHANNEL_NAME = 'chassis:db-pool:query'

export const queryChannel = tracingChannel<QueryContext, QueryContext>(QUERY_CHANNEL_NAME)
