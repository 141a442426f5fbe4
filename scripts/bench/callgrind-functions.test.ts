import assert from 'node:assert/strict'
import { test } from 'node:test'
import { functionCosts, literalKeysRuntime, lookUp, parsePerfMap } from './callgrind-functions.js'

const perfMap = [
  '1000 100 JS:~handler /srv/app.js:10:3',
  // The same function recompiled by TurboFan elsewhere: one name for both.
  "3000 80 JS:*'handler /srv/app.js:10:3",
  '2000 40 Builtin:CallFunction',
  // Freed code whose range was reused: the later line wins.
  '4000 20 JS:~old /srv/old.js:1:1',
  '4000 20 JS:+mixin /srv/log.js:5:7'
].join('\n')

// A callgrind dump with compressed names: JIT code is named by the address of its blocks.
const dump = [
  'version: 1',
  'events: Ir',
  'ob=(1) ???',
  'fn=(1) 0x0000000000001010',
  '0 100',
  'cfn=(2) 0x0000000000002000',
  'calls=1 0',
  '0 30',
  'fn=(3) 0x0000000000003010',
  '0 50',
  'cfn=(1)',
  'calls=1 0',
  '0 100',
  'fn=(2)',
  '0 30',
  'fn=(4) 0x0000000000004004',
  '+2 7',
  'ob=(2) /usr/bin/node',
  'fn=(5) v8::internal::Heap::CollectGarbage',
  '* 11',
  'fn=(6) 0x0000000000009000',
  '0 5'
].join('\n')

test('JIT code that callgrind names by address is summed under its JavaScript function, whichever tier compiled it', () => {
  const map = parsePerfMap(perfMap)
  assert.equal(lookUp(map, 0x1050), 'JS:handler /srv/app.js:10:3')
  assert.equal(lookUp(map, 0x3000), 'JS:handler /srv/app.js:10:3')
  assert.equal(lookUp(map, 0x1100), undefined)
  assert.equal(lookUp(map, 0x4004), 'JS:mixin /srv/log.js:5:7')
  const costs = functionCosts(dump, map)
  // 100 and 50 in the two pieces of handler; its call from one piece into the other is not counted twice.
  assert.deepEqual(costs.get('JS:handler /srv/app.js:10:3'), { self: 150, inclusive: 180 })
  assert.deepEqual(costs.get('Builtin:CallFunction'), { self: 30, inclusive: 30 })
  assert.deepEqual(costs.get('JS:mixin /srv/log.js:5:7'), { self: 7, inclusive: 7 })
  assert.deepEqual(costs.get('v8::internal::Heap::CollectGarbage'), { self: 11, inclusive: 11 })
  assert.deepEqual(costs.get('JIT code outside the perf map'), { self: 5, inclusive: 5 })
})

test('without a perf map the dump\'s own names are kept', () => {
  const costs = functionCosts(dump)
  assert.deepEqual(costs.get('0x0000000000001010'), { self: 100, inclusive: 130 })
})

test('V8\'s runtime for object literals\' computed keys is read inclusive of what it called, under whatever signature', () => {
  const costs = functionCosts([
    'version: 1',
    'events: Ir',
    'fn=(1) v8::internal::Runtime_DefineKeyedOwnPropertyInLiteral(int, unsigned long*, v8::internal::Isolate*)',
    '0 40',
    'cfn=(2) v8::internal::JSObject::MigrateToMap',
    'calls=1 0',
    '0 60',
    'fn=(2)',
    '0 60',
    'fn=(3) v8::internal::Runtime_DefineKeyedOwnPropertyInLiteral_Simple(int)',
    '0 9'
  ].join('\n'))
  assert.equal(literalKeysRuntime(costs), 100)
})
