import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ChangeHistory, MAX_KEYS_PER_CHANGE } from './change-history.js'

test('a change naming more than MAX_KEYS_PER_CHANGE keys is remembered as touching every key, so the history holds a bounded number of keys', () => {
  const history = new ChangeHistory()
  const before = history.seq
  history.record({ keys: ['a', 'b'] })
  assert.equal(history.changedSince('a', undefined, before), true)
  assert.equal(history.changedSince('z', undefined, before), false, 'a small change names its keys')
  const beforeImport = history.seq
  // An import batch: a thousand keys. Kept whole on every instance, 1,024 of them held a million strings.
  history.record({ keys: Array.from({ length: 1000 }, (_v, i) => `lead:${i}`) })
  assert.ok(MAX_KEYS_PER_CHANGE < 1000)
  assert.equal(history.changedSince('lead:5', undefined, beforeImport), true, 'a load of one of its keys is not stored')
  assert.equal(history.changedSince('unrelated', undefined, beforeImport), true, 'nor one of any key it overlapped: conservative, never stale')
  const after = history.seq
  assert.equal(history.changedSince('unrelated', undefined, after), false, 'a load begun after it is stored')
})
