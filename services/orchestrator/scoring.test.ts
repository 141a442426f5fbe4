import { test } from 'node:test'
import assert from 'node:assert/strict'
import { scoreLead } from './scoring.js'

const now = Date.parse('2026-06-01T12:00:00Z')
const base = { product: 'auto', state: 'WA', phone: null, firstName: 'A', lastName: 'B', createdAt: new Date(now - 30 * 86400000), source: 'other' } as const

test('scores follow the documented rules, and the same lead always scores the same', () => {
  const cases: Array<[Partial<Parameters<typeof scoreLead>[0]>, number]> = [
    [{}, 15 + 5 + 0 + 0 + 0 + 3],
    [{ product: 'commercial' }, 30 + 5 + 3],
    [{ state: 'CA' }, 15 + 10 + 3],
    [{ phone: '+1 555 0100' }, 15 + 5 + 15 + 3],
    [{ firstName: 'Ann', lastName: 'Lee' }, 15 + 5 + 5 + 3],
    [{ createdAt: new Date(now - 60000) }, 15 + 5 + 25 + 3],
    [{ createdAt: new Date(now - 2 * 3600000) }, 15 + 5 + 15 + 3],
    [{ createdAt: new Date(now - 3 * 86400000) }, 15 + 5 + 5 + 3],
    [{ source: 'referral' }, 15 + 5 + 15],
    [{ source: 'partner' }, 15 + 5 + 10],
    [{ product: 'commercial', state: 'NY', phone: '+1 555 0100', firstName: 'Ann', lastName: 'Lee', createdAt: new Date(now), source: 'referral' }, 100]
  ]
  for (const [change, expected] of cases) {
    const lead = { ...base, ...change }
    assert.equal(scoreLead(lead, now).score, expected, JSON.stringify(change))
    assert.deepEqual(scoreLead(lead, now), scoreLead(lead, now))
    assert.equal(scoreLead(lead, now).rules.reduce((n, r) => n + r.points, 0), expected)
  }
})
