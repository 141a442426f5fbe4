import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isConnectionError, toDatabaseError } from './errors.js'

test('SQLSTATEs map to codes, HTTP statuses and retryability', () => {
  const table: Array<[string, string, number, boolean]> = [
    ['23505', 'DB_UNIQUE_VIOLATION', 409, false],
    ['23503', 'DB_FOREIGN_KEY_VIOLATION', 409, false],
    ['23514', 'DB_CONSTRAINT_VIOLATION', 400, false],
    ['22P02', 'DB_INVALID_INPUT', 400, false],
    ['40001', 'DB_SERIALIZATION_FAILURE', 503, true],
    ['40P01', 'DB_DEADLOCK', 503, true],
    ['57014', 'DB_QUERY_TIMEOUT', 503, false],
    ['57P01', 'DB_UNAVAILABLE', 503, true],
    ['08006', 'DB_UNAVAILABLE', 503, true],
    ['42601', 'DB_ERROR', 500, false]
  ]
  for (const [sqlState, code, statusCode, retryable] of table) {
    const e = toDatabaseError(Object.assign(new Error('x'), { code: sqlState }))
    assert.deepEqual([e.code, e.statusCode, e.retryable, e.sqlState], [code, statusCode, retryable, sqlState], sqlState)
  }
})

test('network failures and pg connection messages are connection errors', () => {
  assert.ok(isConnectionError(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' })))
  assert.ok(isConnectionError(new Error('Connection terminated unexpectedly')))
  assert.ok(isConnectionError(new Error('timeout exceeded when trying to connect')))
  assert.ok(!isConnectionError(Object.assign(new Error('dup'), { code: '23505' })))
})

test('messages never carry the row values PostgreSQL puts in detail', () => {
  const e = toDatabaseError(Object.assign(new Error('duplicate key'), { code: '23505', constraint: 'leads_email_product_key', detail: 'Key (email)=(ann@example.com) already exists.' }))
  assert.doesNotMatch(e.message, /ann@example.com/)
  assert.match(e.message, /leads_email_product_key/)
})
