import { canonicalLeadId } from './lead-id.js'
import type { Lead, LeadListQuery } from './lead-schemas.js'

/**
 * What the services cache and what a change invalidates; every service that changes leads uses these names, so a
 * change made through one service reaches the caches of the others (with a shared Redis).
 * Every list also carries ALL_LISTS_TAG, for changes too wide to name list by list (an import).
 * Reports carry REPORT_TAGS: `leads` for anything that changes leads, `assignments` for routing. A list is tagged with its equality filters (status, product,
 * state, or * when absent); a lead appears only in lists whose filters it satisfies, so a change invalidates the
 * 8 combinations of its old and new values, never unrelated lists, whatever their number of cached pages.
 */
export function leadKey (id: string): string {
  // Routes already hand over canonical ids; this keeps one key per lead whoever calls it.
  return `http:leads:id:${canonicalLeadId(id)}`
}

/** Every part is an enum, a number or a base64url cursor (schema-checked), so `|` cannot occur inside one. */
export function listKey (query: LeadListQuery): string {
  const { status, product, state, minScore, sort, limit, cursor } = query
  return `http:leads:list:${status ?? ''}|${product ?? ''}|${state ?? ''}|${minScore ?? ''}|${sort}|${limit}|${cursor ?? ''}`
}

function listTag (status: string, product: string, state: string): string {
  return `leads:list:${status}:${product}:${state}`
}

export function listTagFor (query: LeadListQuery): string {
  return listTag(query.status ?? '*', query.product ?? '*', query.state ?? '*')
}

function listTagsOf (...leads: Lead[]): string[] {
  const tags = new Set<string>()
  for (const lead of leads) {
    for (const status of [lead.status, '*']) {
      for (const product of [lead.product, '*']) {
        for (const state of [lead.state, '*']) tags.add(listTag(status, product, state))
      }
    }
  }
  return [...tags]
}

/** Carried by every cached list of leads. */
export const ALL_LISTS_TAG = 'leads:list:all'

/** Tags of the data-service's reports. */
export const REPORT_TAGS = { leads: 'reports:leads', assignments: 'reports:assignments' } as const

/** The tags a change to these leads invalidates: the lists they can appear in, and the reports. */
export function changeTagsOf (...leads: Lead[]): string[] {
  return [...listTagsOf(...leads), REPORT_TAGS.leads]
}
