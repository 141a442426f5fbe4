import type { ConfigFragment, ConfigOf } from '../chassis/index.js'
import { CDN_DEFAULTS, CDN_PROVIDERS, type CdnPurgerOptions } from './options.js'

export const cdnConfigFragment = {
  properties: {
    CDN_PROVIDER: { type: 'string', enum: CDN_PROVIDERS, default: CDN_DEFAULTS.provider, description: 'CDN whose cache `npm run cdn:purge` and the deploy step purge: cloudflare, fastly, cloudfront or none' },
    CDN_ZONE_ID: { type: 'string', default: '', description: 'Cloudflare zone id, Fastly service id or CloudFront distribution id' },
    CDN_API_KEY: { type: 'string', default: '', description: 'Cloudflare API token, Fastly API token or CloudFront accessKeyId:secretAccessKey (from a secret; never logged)' },
    CDN_SITE_URL: { type: 'string', default: '', description: 'Public origin of the site (https://leads.example.com); Cloudflare and Fastly purge absolute URLs' },
    CDN_API_URL: { type: 'string', default: '', description: "Origin of the provider's purge API instead of its public one (a proxy; the tests' fakes)" }
  }
} as const satisfies ConfigFragment

export type CdnConfig = ConfigOf<typeof cdnConfigFragment>

export function cdnOptionsFromConfig (config: CdnConfig): CdnPurgerOptions {
  return {
    provider: config.CDN_PROVIDER,
    zoneId: config.CDN_ZONE_ID,
    apiKey: config.CDN_API_KEY,
    ...(config.CDN_SITE_URL ? { siteUrl: config.CDN_SITE_URL } : {}),
    ...(config.CDN_API_URL ? { apiUrl: config.CDN_API_URL } : {})
  }
}
