import { CdnErrors } from '../errors.js'
import { chunks, parseJson, type Provider, type ProviderCall } from './provider.js'

/** Fastly takes at most 256 surrogate keys in one batch purge. */
const BATCH = 256

/** Surrogate keys: POST /service/{service_id}/purge; one URL: POST /purge/{host}{path}; Fastly-Key header. */
export const fastly: Provider = {
  calls (targets, opts) {
    const headers = { 'fastly-key': opts.apiKey, accept: 'application/json' }
    const calls: ProviderCall[] = []
    if (targets.paths.some((p) => p.endsWith('*'))) throw new CdnErrors.CDN_UNSUPPORTED_PURGE('Fastly', 'a path prefix (tag the responses and purge the tag)')
    if (targets.paths.length > 0) {
      if (!opts.siteUrl) throw new CdnErrors.CDN_UNSUPPORTED_PURGE('Fastly', 'paths without the site URL (CDN_SITE_URL)')
      const host = new URL(opts.siteUrl).host
      for (const path of targets.paths) calls.push({ url: `${opts.apiUrl}/purge/${host}${path}`, headers, body: '', targets: [path] })
    }
    for (const batch of chunks(targets.tags, BATCH)) {
      calls.push({
        url: `${opts.apiUrl}/service/${opts.zoneId}/purge`,
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ surrogate_keys: batch }),
        targets: batch
      })
    }
    return calls
  },
  accepted (status, body) {
    const answer = parseJson(body) as Record<string, unknown> | undefined
    const ok = status >= 200 && status < 300 && answer !== undefined
    const id = typeof answer?.id === 'string' ? answer.id : undefined
    return { ok, ...(id ? { id } : {}) }
  },
  describe (status, body) {
    const answer = parseJson(body) as { msg?: string, detail?: string } | undefined
    const words = [answer?.msg, answer?.detail].filter(Boolean).join(': ')
    return `HTTP ${status}${words ? `: ${words}` : ''}`
  }
}
