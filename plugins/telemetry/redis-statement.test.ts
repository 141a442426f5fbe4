import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ROOT_CONTEXT, TraceFlags, context, trace } from '@opentelemetry/api'
import { node } from '@opentelemetry/sdk-node'
import { redisStatement, unsampledSkipped } from './redis-statement.js'

// The SDK's context manager, so that the active span is what the instrumentations would see.
new node.NodeTracerProvider().register()

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

const ids = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
const inSpan = <T>(flags: TraceFlags, fn: () => T): T => context.with(trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ ...ids, traceFlags: flags })), fn)

test('a Redis command of an unsampled request builds no statement under a parent-based sampler', () => {
  const calls: string[] = []
  const serializer = unsampledSkipped((command: string, args: string[]) => { calls.push(command); return `${command} ${args.join(' ')}` }, 'parentbased_traceidratio')
  assert.equal(inSpan(TraceFlags.NONE, () => serializer('get', ['k'])), 'get')
  assert.deepEqual(calls, [], 'the serializer was not called for a span that records nothing')
  // Outside any request (no active span) the command starts its own trace, which the sampler may keep.
  assert.equal(serializer('get', ['k']), 'get k')
  assert.deepEqual(calls, ['get'])
})

test('a sampler that is not parent-based may record a child of an unsampled span: the statement is always built', () => {
  const serializer = unsampledSkipped((command: string, args: string[]) => `${command} ${args.join(' ')}`, 'traceidratio')
  assert.equal(inSpan(TraceFlags.NONE, () => serializer('get', ['k'])), 'get k')
})
