import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServiceClient } from './client.js'

test('invalid service client options throw one coded error naming each problem', () => {
  assert.throws(() => createServiceClient({ name: 'data-service', baseUrl: 'ftp://127.0.0.1', breakerThreshold: 0, timeoutMs: -1, retries: 1.5, connections: 0, retryBaseMs: -1 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'HTTP_CLIENT_INVALID_OPTIONS')
    assert.match(e.message, /^Invalid service client options for data-service: /)
    for (const problem of ['baseUrl must be an http or https URL', 'timeoutMs must be a positive number', 'breakerThreshold must be a positive integer',
      'connections must be a positive integer', 'retries must be a non-negative integer', 'retryBaseMs must be a non-negative number']) assert.match(e.message, new RegExp(problem))
    return true
  })
})
