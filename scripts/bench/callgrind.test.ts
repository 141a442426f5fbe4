import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { callgrindTotal } from './callgrind.js'

const header = ['# callgrind format', 'version: 1', 'creator: callgrind-3.19.0', 'part: 1', 'thread: 1', 'positions: line', 'events: Ir', 'summary: 0', '']
const hasAnnotate = spawnSync('callgrind_annotate', ['--version']).error === undefined

test('a dump taken after --instr=off counts what its cost lines say, not the 0 of its summary line', { skip: !hasAnnotate && 'callgrind_annotate is not installed' }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'callgrind-total-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'cg.1.1-01')
  writeFileSync(file, [...header, 'fl=(1) a.c', 'fn=(1) main', '1 1200', '2 34', '', 'totals: 1234', ''].join('\n'))
  assert.equal(callgrindTotal(file), 1234)
})

test('a thread that ran nothing while counted totals 0 instead of failing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'callgrind-total-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'cg.1.1-08')
  writeFileSync(file, [...header, '', 'totals: 0', ''].join('\n'))
  assert.equal(callgrindTotal(file), 0)
})
