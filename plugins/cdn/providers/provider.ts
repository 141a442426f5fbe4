import type { ResolvedCdnOptions } from '../options.js'

/** What to purge: URL paths of the site (`/static/app.css`; a trailing `*` purges a prefix) and cache tags. */
export interface PurgeTargets {
  paths: string[]
  tags: string[]
}

/** One HTTP request to a provider's purge API. */
export interface ProviderCall {
  url: string
  headers: Record<string, string>
  body: string
  /** The paths or tags this request purges, for the result and for errors. */
  targets: string[]
}

export interface Provider {
  /** The requests that purge the targets, in the provider's batch sizes. Throws CDN_UNSUPPORTED_PURGE. */
  calls: (targets: PurgeTargets, opts: ResolvedCdnOptions) => ProviderCall[]
  /** Whether the answer means success, and the provider's id of the purge if it gives one. */
  accepted: (status: number, body: string) => { ok: boolean, id?: string }
  /** The provider's own words for a refusal (its error codes and messages), for the error people read. */
  describe: (status: number, body: string) => string
}

export function chunks<T> (items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export function parseJson (body: string): unknown {
  try { return JSON.parse(body) } catch { return undefined }
}
