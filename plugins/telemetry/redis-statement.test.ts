import { test } from 'node:test'
import assert from 'node:assert/strict'
import { redisStatement } from './redis-statement.js'

const lead = JSON.stringify({ firstName: 'Ann', email: 'ann@example.com', phone: '+1 555 010 0001' })

test('a cached lead written through Lua reaches a Redis span as EVALSHA and its keys, never the lead or the script', () => {
  assert.equal(redisStatement('evalsha', ['2feb3ab13b35e87dcde99884e8124cf2894e574c', 2, 'c:http:leads:id:1', 'c:tags:x', lead, 30000]), 'evalsha c:http:leads:id:1 c:tags:x')
  assert.equal(redisStatement('eval', ['return redis.call("SET", KEYS[1], ARGV[1])', '1', 'k', lead]), 'eval k')
})

test('a Redis statement keeps the command and its keys, for every command, and drops every value', () => {
  assert.equal(redisStatement('set', ['c:lead:1', lead, 'PX', 1000]), 'set c:lead:1')
  assert.equal(redisStatement('hset', ['h', 'email', 'ann@example.com']), 'hset h')
  assert.equal(redisStatement('mset', ['a', lead, 'b', lead]), 'mset a b')
  assert.equal(redisStatement('mget', ['a', 'b']), 'mget a b')
  assert.equal(redisStatement('publish', ['cache:invalidate', lead]), 'publish')
  assert.equal(redisStatement('auth', ['user', 'password']), 'auth')
  assert.equal(redisStatement('get', [Buffer.from('buffered')]), 'get buffered')
  assert.equal(redisStatement('notacommand', [lead]), 'notacommand')
})
