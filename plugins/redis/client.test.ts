import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRedisClient } from './client.js'

test('invalid Redis client options throw one coded error naming each problem, never the URL', () => {
  assert.throws(() => createRedisClient({ url: 'http://user:hunter2@127.0.0.1:6379', commandTimeoutMs: -1 }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'REDIS_INVALID_OPTIONS')
    assert.match(e.message, /url must be a redis:\/\/ or rediss:\/\/ URL/)
    assert.match(e.message, /commandTimeoutMs must be a positive number/)
    assert.doesNotMatch(e.message, /hunter2/)
    return true
  })
  assert.throws(() => createRedisClient({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 0 }), /commandTimeoutMs must be a positive number/)
})
