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

test('a key is untouched since a point only when no change after it names the key, any pattern, any tag or everything, and the history reaches back to it', () => {
  const history = new ChangeHistory()
  const start = history.seq
  assert.equal(history.untouchedSince('a', start), true, 'nothing recorded since')
  history.record({ keys: ['b'] })
  assert.equal(history.untouchedSince('a', start), true, 'another key changed')
  assert.equal(history.untouchedSince('b', start), false)
  const afterKey = history.seq
  history.record({ patterns: [/^lead:/] })
  assert.equal(history.untouchedSince('lead:1', afterKey), false, 'a pattern it matches')
  // Redis matches a glob by bytes and the RegExp made of it by UTF-16 units: any pattern may have touched it.
  assert.equal(history.untouchedSince('page:1', afterKey), false, 'any pattern')
  const afterPattern = history.seq
  // Which tags a key carries is known only once its entry is read: any tag may be one of them.
  history.record({ tags: ['leads'] })
  assert.equal(history.untouchedSince('page:1', afterPattern), false, 'any tag')
  const afterTag = history.seq
  history.record({ all: true })
  assert.equal(history.untouchedSince('page:1', afterTag), false, 'everything')
  const afterAll = history.seq
  // Past what the history holds, it cannot say: not untouched.
  for (let i = 0; i < 2000; i++) history.record({ keys: [`other:${i}`] })
  assert.equal(history.untouchedSince('page:1', afterAll), false, 'the history no longer reaches back')
  assert.equal(history.untouchedSince('page:1', history.seq - 10), true)
})
