import { test, mock } from 'node:test'
import assert from 'node:assert/strict'
import { CircuitBreaker } from './breaker.js'

/** `calls` calls started together: each reads the epoch at its start, as `withBudget` does. */
function startCalls (breaker: CircuitBreaker, calls: number): number[] {
  return Array.from({ length: calls }, () => {
    assert.equal(breaker.allow(), true)
    return breaker.epoch
  })
}

test('the calls in flight when a stall hits count once against the breaker, however many they are', () => {
  const breaker = new CircuitBreaker(2, 60_000)
  for (const startedIn of startCalls(breaker, 500)) breaker.failure(startedIn)
  assert.equal(breaker.state, 'closed', 'one stall is one failure, below a threshold of 2')
})

test('calls started after a counted failure count again, so a dependency that stays down opens the breaker after threshold waves', () => {
  const states: string[] = []
  const breaker = new CircuitBreaker(3, 60_000, (state) => { states.push(state) })
  for (let wave = 1; wave <= 3; wave++) {
    for (const startedIn of startCalls(breaker, 64)) breaker.failure(startedIn)
    assert.equal(breaker.state, wave < 3 ? 'closed' : 'open', `after wave ${wave}`)
  }
  assert.deepEqual(states, ['open'])
})

test('a success between two stalls starts the count again', () => {
  const breaker = new CircuitBreaker(2, 60_000)
  for (const startedIn of startCalls(breaker, 10)) breaker.failure(startedIn)
  breaker.success()
  for (const startedIn of startCalls(breaker, 10)) breaker.failure(startedIn)
  assert.equal(breaker.state, 'closed')
  for (const startedIn of startCalls(breaker, 10)) breaker.failure(startedIn)
  assert.equal(breaker.state, 'open')
})

test('a failure without its start epoch counts on its own, as before', () => {
  const breaker = new CircuitBreaker(3, 60_000)
  breaker.failure()
  breaker.failure()
  assert.equal(breaker.state, 'closed')
  breaker.failure()
  assert.equal(breaker.state, 'open')
})

test('a call started before the breaker opened does not re-open it when it fails during the probe', (t) => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  t.after(() => { mock.timers.reset() })
  const breaker = new CircuitBreaker(1, 1000)
  const [stale] = startCalls(breaker, 2)
  breaker.failure(stale)
  assert.equal(breaker.state, 'open')
  mock.timers.tick(1000)
  assert.equal(breaker.allow(), true, 'the probe')
  const probe = breaker.epoch
  assert.equal(breaker.allow(), false, 'one probe at a time')
  breaker.failure(stale)
  assert.equal(breaker.state, 'half_open', 'the old stall was counted when the breaker opened')
  assert.equal(breaker.allow(), false, 'the probe is still out')
  breaker.failure(probe)
  assert.equal(breaker.state, 'open', 'the probe itself failing re-opens it')
})

test('a trip counts the calls in flight on the lost connection', (t) => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  t.after(() => { mock.timers.reset() })
  const breaker = new CircuitBreaker(1, 1000)
  const inFlight = startCalls(breaker, 3)
  breaker.trip()
  mock.timers.tick(1000)
  assert.equal(breaker.allow(), true)
  for (const startedIn of inFlight) breaker.failure(startedIn)
  assert.equal(breaker.state, 'half_open')
  breaker.success()
  assert.equal(breaker.state, 'closed')
})
