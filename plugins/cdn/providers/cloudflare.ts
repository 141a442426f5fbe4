import { CdnErrors } from '../errors.js'
import { chunks, parseJson, type Provider, type ProviderCall } from './provider.js'

/** Cloudflare takes at most 100 URLs, prefixes or tags in one purge request. */
const BATCH = 100

interface CloudflareAnswer { success?: boolean, errors?: Array<{ code?: number, message?: string }>, result?: { id?: string } }

/** POST /client/v4/zones/{zone_id}/purge_cache with `files`, `prefixes` or `tags`, Bearer token. */
export const cloudflare: Provider = {
  calls (targets, opts) {
    const calls: ProviderCall[] = []
    const send = (field: 'files' | 'prefixes' | 'tags', values: string[], shown: string[]): void => {
      chunks(values, BATCH).forEach((batch, i) => calls.push({
        url: `${opts.apiUrl}/client/v4/zones/${opts.zoneId}/purge_cache`,
        headers: { authorization: `Bearer ${opts.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ [field]: batch }),
        targets: shown.slice(i * BATCH, (i + 1) * BATCH)
      }))
    }
    if (targets.paths.length > 0) {
      if (!opts.siteUrl) throw new CdnErrors.CDN_UNSUPPORTED_PURGE('Cloudflare', 'paths without the site URL (CDN_SITE_URL)')
      const site = new URL(opts.siteUrl)
      const files = targets.paths.filter((p) => !p.endsWith('*'))
      const prefixes = targets.paths.filter((p) => p.endsWith('*'))
      send('files', files.map((p) => `${site.origin}${p}`), files)
      // A prefix is host and path without the scheme.
      send('prefixes', prefixes.map((p) => `${site.host}${p.slice(0, -1)}`), prefixes)
    }
    send('tags', targets.tags, targets.tags)
    return calls
  },
  accepted (status, body) {
    const answer = parseJson(body) as CloudflareAnswer | undefined
    const ok = status >= 200 && status < 300 && answer?.success === true
    return { ok, ...(answer?.result?.id ? { id: answer.result.id } : {}) }
  },
  describe (status, body) {
    const answer = parseJson(body) as CloudflareAnswer | undefined
    const errors = (answer?.errors ?? []).map((e) => `${e.code ?? '?'} ${e.message ?? ''}`.trim())
    return `HTTP ${status}${errors.length > 0 ? `: ${errors.join('; ')}` : ''}`
  }
}
