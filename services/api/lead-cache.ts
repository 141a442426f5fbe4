import type { Lead, LeadListQuery } from '../domain/lead-schemas.js'

/**
 * What the api caches and what a change invalidates. A list is tagged with its equality filters (status, product,
 * state, or * when absent); a lead appears only in lists whose filters it satisfies, so a change invalidates the
 * 8 combinations of its old and new values, never unrelated lists, whatever their number of cached pages.
 */
export function leadKey (id: string): string {
  return `http:leads:id:${id}`
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

export function listTagsOf (...leads: Lead[]): string[] {
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
