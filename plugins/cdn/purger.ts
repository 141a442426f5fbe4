import { setTimeout as sleep } from 'node:timers/promises'
import { CdnErrors } from './errors.js'
import { resolveCdnOptions, type CdnProvider, type CdnPurgerOptions, type ResolvedCdnOptions } from './options.js'
import { cloudflare } from './providers/cloudflare.js'
import { cloudfront } from './providers/cloudfront.js'
import { fastly } from './providers/fastly.js'
import type { Provider, ProviderCall, PurgeTargets } from './providers/provider.js'

export type { PurgeTargets } from './providers/provider.js'

export interface PurgeResult {
  provider: CdnProvider
  /** One entry per request sent: what it purged, the provider's purge id, and the attempts it took. */
  requests: Array<{ targets: string[], id: string | undefined, attempts: number }>
}

const PROVIDERS: Record<Exclude<CdnProvider, 'none'>, Provider> = { cloudflare, fastly, cloudfront }
/** A Retry-After longer than this is not waited for: the purge fails and says so. */
const MAX_RETRY_AFTER_MS = 60_000

function validTargets (targets: Partial<PurgeTargets>): PurgeTargets {
  const paths = [...new Set(targets.paths ?? [])]
  const tags = [...new Set(targets.tags ?? [])]
  for (const path of paths) {
    if (!/^\/[^\s]*$/.test(path) || path.length > 2048) throw new CdnErrors.CDN_INVALID_OPTIONS(`"${path.slice(0, 80)}" is not a URL path starting with /`)
  }
  for (const tag of tags) {
    if (!/^[A-Za-z0-9._:-]{1,1024}$/.test(tag)) throw new CdnErrors.CDN_INVALID_OPTIONS(`"${tag.slice(0, 80)}" is not a cache tag (letters, digits, . _ : -)`)
  }
  return { paths, tags }
}

/**
 * Purges paths and cache tags from the configured CDN: batched as the provider allows, each request retried on a
 * network error, a timeout, a 429 or a 5xx (Retry-After honoured), a refusal reported in the provider's own words.
 * The API key is sent only in the provider's auth header and never appears in an error.
 */
export class CdnPurger {
  readonly #opts: ResolvedCdnOptions
  readonly #provider: Provider | undefined

  constructor (opts: CdnPurgerOptions = {}) {
    this.#opts = resolveCdnOptions(opts)
    this.#provider = this.#opts.provider === 'none' ? undefined : PROVIDERS[this.#opts.provider]
  }

  get provider (): CdnProvider {
    return this.#opts.provider
  }

  async purge (targets: Partial<PurgeTargets>): Promise<PurgeResult> {
    const wanted = validTargets(targets)
    const result: PurgeResult = { provider: this.#opts.provider, requests: [] }
    if (!this.#provider) return result
    for (const call of this.#provider.calls(wanted, this.#opts)) result.requests.push(await this.#send(this.#provider, call))
    return result
  }

  async #send (provider: Provider, call: ProviderCall): Promise<PurgeResult['requests'][number]> {
    const name = this.#opts.provider
    for (let attempt = 1; ; attempt++) {
      let waitMs = this.#opts.retryBaseMs * 2 ** (attempt - 1) * Math.random()
      let failure: string
      try {
        const res = await fetch(call.url, { method: 'POST', headers: call.headers, body: call.body, signal: AbortSignal.timeout(this.#opts.timeoutMs) })
        const body = await res.text()
        const answer = provider.accepted(res.status, body)
        if (answer.ok) return { targets: call.targets, id: answer.id, attempts: attempt }
        failure = this.#redact(provider.describe(res.status, body))
        if (res.status !== 429 && res.status < 500) throw new CdnErrors.CDN_PURGE_FAILED(name, failure)
        const retryAfter = Number(res.headers.get('retry-after'))
        if (Number.isFinite(retryAfter) && retryAfter > 0) waitMs = retryAfter * 1000
      } catch (error) {
        if ((error as { code?: string }).code === 'CDN_PURGE_FAILED') throw error
        failure = (error as Error).name === 'TimeoutError' ? `no answer within ${this.#opts.timeoutMs} ms` : this.#redact((error as Error).message)
      }
      if (attempt > this.#opts.retries) throw new CdnErrors.CDN_PURGE_FAILED(name, `${failure} (after ${attempt} attempts)`)
      if (waitMs > MAX_RETRY_AFTER_MS) throw new CdnErrors.CDN_PURGE_FAILED(name, `${failure} (asked to wait ${Math.round(waitMs / 1000)} s)`)
      await sleep(waitMs)
    }
  }

  /** A provider may echo what it was sent; the key never leaves this object. */
  #redact (text: string): string {
    let out = text
    for (const secret of [this.#opts.apiKey, ...this.#opts.apiKey.split(':')]) {
      if (secret.length >= 4) out = out.split(secret).join('[REDACTED]')
    }
    return out
  }
}

export function createCdnPurger (opts: CdnPurgerOptions = {}): CdnPurger {
  return new CdnPurger(opts)
}
