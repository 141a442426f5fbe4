import { MAX_TIMER_MS } from '../chassis/index.js'
import { CdnErrors } from './errors.js'

export const CDN_PROVIDERS = ['none', 'cloudflare', 'fastly', 'cloudfront'] as const
export type CdnProvider = typeof CDN_PROVIDERS[number]

export interface CdnPurgerOptions {
  /** Which CDN's purge API to call; `none` purges nothing. @default 'none' */
  provider?: CdnProvider
  /** Cloudflare zone id, Fastly service id, or CloudFront distribution id. */
  zoneId?: string
  /** Cloudflare API token, Fastly API token, or CloudFront `accessKeyId:secretAccessKey`. Never logged. */
  apiKey?: string
  /** Public origin of the site, e.g. https://leads.example.com: Cloudflare and Fastly purge absolute URLs. */
  siteUrl?: string
  /** Origin of the provider's API, for a proxy or a test double. @default the provider's public API */
  apiUrl?: string
  /** Extra attempts of one purge request after a network error, a timeout, a 429 or a 5xx. @default 3 */
  retries?: number
  /** First backoff in ms, doubled per attempt with full jitter; a Retry-After from the provider wins. @default 500 */
  retryBaseMs?: number
  /** Budget of one attempt in ms. @default 10000 */
  timeoutMs?: number
}

export type ResolvedCdnOptions = Required<Omit<CdnPurgerOptions, 'siteUrl'>> & { siteUrl: string | undefined }

export const CDN_DEFAULTS = Object.freeze({
  provider: 'none' as CdnProvider,
  retries: 3,
  retryBaseMs: 500,
  timeoutMs: 10_000
})

const PUBLIC_API: Record<CdnProvider, string> = {
  none: '',
  cloudflare: 'https://api.cloudflare.com',
  fastly: 'https://api.fastly.com',
  cloudfront: 'https://cloudfront.amazonaws.com'
}

function origin (value: string, name: string): string {
  let url: URL
  try { url = new URL(value) } catch { throw new CdnErrors.CDN_INVALID_OPTIONS(`${name} is not a URL`) }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CdnErrors.CDN_INVALID_OPTIONS(`${name} must be http or https`)
  return url.origin
}

export function resolveCdnOptions (opts: CdnPurgerOptions): ResolvedCdnOptions {
  const provider = opts.provider ?? CDN_DEFAULTS.provider
  if (!CDN_PROVIDERS.includes(provider)) throw new CdnErrors.CDN_INVALID_OPTIONS(`provider must be one of ${CDN_PROVIDERS.join(', ')}`)
  const retries = opts.retries ?? CDN_DEFAULTS.retries
  const retryBaseMs = opts.retryBaseMs ?? CDN_DEFAULTS.retryBaseMs
  const timeoutMs = opts.timeoutMs ?? CDN_DEFAULTS.timeoutMs
  if (!Number.isInteger(retries) || retries < 0 || retries > 10) throw new CdnErrors.CDN_INVALID_OPTIONS('retries must be an integer from 0 to 10')
  if (!Number.isFinite(retryBaseMs) || retryBaseMs < 0) throw new CdnErrors.CDN_INVALID_OPTIONS('retryBaseMs must be 0 or more')
  // Node fires a timer above MAX_TIMER_MS at once: every attempt would time out. (A backoff that long is refused
  // before it is waited for: the purger never waits more than a minute.)
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_MS) throw new CdnErrors.CDN_INVALID_OPTIONS(`timeoutMs must be positive and at most ${MAX_TIMER_MS}`)
  const zoneId = opts.zoneId ?? ''
  const apiKey = opts.apiKey ?? ''
  if (provider !== 'none') {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(zoneId)) throw new CdnErrors.CDN_INVALID_OPTIONS(`the ${provider} zone id (CDN_ZONE_ID) is missing or malformed`)
    if (apiKey === '') throw new CdnErrors.CDN_INVALID_OPTIONS(`the ${provider} API key (CDN_API_KEY) is missing`)
    if (provider === 'cloudfront' && !/^[^:]+:.+$/.test(apiKey)) throw new CdnErrors.CDN_INVALID_OPTIONS('the CloudFront key (CDN_API_KEY) is accessKeyId:secretAccessKey')
  }
  const siteUrl = opts.siteUrl ? origin(opts.siteUrl, 'siteUrl') : undefined
  const apiUrl = opts.apiUrl ? origin(opts.apiUrl, 'apiUrl') : PUBLIC_API[provider]
  return { provider, zoneId, apiKey, siteUrl, apiUrl, retries, retryBaseMs, timeoutMs }
}
