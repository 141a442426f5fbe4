import type { Lead } from '../domain/lead-schemas.js'

/**
 * The routing score of a lead, 0-100, and the rules that made it: deterministic (the same lead at the same time
 * always scores the same) and explained, so an agent or an auditor can see why a lead ranked where it did.
 *
 * | rule         | points                                                                 |
 * | ------------ | ---------------------------------------------------------------------- |
 * | product      | commercial 30, life 25, health 22, home 18, auto 15                   |
 * | state        | 10 in the high-demand states (CA, TX, FL, NY, IL), 5 elsewhere         |
 * | completeness | 15 with a phone number, 5 when both names are longer than one letter   |
 * | freshness    | 25 under an hour old, 15 under a day, 5 under a week, 0 older          |
 * | source       | referral 15, partner 10, web 5, anything else 3                        |
 */
const PRODUCT_POINTS: Record<Lead['product'], number> = { commercial: 30, life: 25, health: 22, home: 18, auto: 15 }
const HIGH_DEMAND_STATES = new Set(['CA', 'TX', 'FL', 'NY', 'IL'])
const SOURCE_POINTS: Record<string, number> = { referral: 15, partner: 10, web: 5 }

export interface Score {
  score: number
  rules: Array<{ rule: string, points: number }>
}

/** What scoring reads of a lead: a row, or the data-service's answer (dates as ISO strings). */
export type ScorableLead = Pick<Lead, 'product' | 'state' | 'phone' | 'firstName' | 'lastName' | 'source'> & { createdAt: Date | string }

export function scoreLead (lead: ScorableLead, now = Date.now()): Score {
  const ageMs = now - new Date(lead.createdAt).getTime()
  const rules = [
    { rule: `product ${lead.product}`, points: PRODUCT_POINTS[lead.product] },
    { rule: `state ${lead.state}`, points: HIGH_DEMAND_STATES.has(lead.state) ? 10 : 5 },
    { rule: 'phone given', points: lead.phone ? 15 : 0 },
    { rule: 'full names', points: lead.firstName.length > 1 && lead.lastName.length > 1 ? 5 : 0 },
    { rule: 'freshness', points: ageMs < 3600000 ? 25 : ageMs < 86400000 ? 15 : ageMs < 7 * 86400000 ? 5 : 0 },
    { rule: `source ${lead.source}`, points: SOURCE_POINTS[lead.source] ?? 3 }
  ]
  return { score: Math.min(100, rules.reduce((n, r) => n + r.points, 0)), rules }
}
