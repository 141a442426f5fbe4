import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Handover } from './handover.js'

test('what an instance owes a key is kept to the key\'s window as the fallback admits more: a long outage does not grow it', () => {
  const handover = new Handover(100)
  const policy = { name: 'p', limit: 1000, windowMs: 100 }
  // An hour of an outage in 10 ms steps, cost 100 each: at most one window's worth is kept.
  for (let now = 0; now < 3_600_000; now += 10) handover.admitted(['k'], [policy], 100, now)
  const [owed] = handover.take(3_600_000)
  assert.ok(owed !== undefined)
  assert.ok(owed.times.length <= 1000, `${owed.times.length} kept`)
  assert.equal(handover.owing, false, 'taken out')
})
