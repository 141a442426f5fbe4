import { randomUUID } from 'node:crypto'
import aws4 from 'aws4'
import { CdnErrors } from '../errors.js'
import { chunks, type Provider, type ProviderCall } from './provider.js'

/** CloudFront takes at most 3,000 paths in one invalidation. */
const BATCH = 3000
const API_VERSION = '2020-05-31'

function xml (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function element (body: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1]
}

/** CreateInvalidation: POST /2020-05-31/distribution/{id}/invalidation, an XML InvalidationBatch, signed with SigV4. */
export const cloudfront: Provider = {
  calls (targets, opts) {
    if (targets.tags.length > 0) throw new CdnErrors.CDN_UNSUPPORTED_PURGE('CloudFront', 'cache tags (it invalidates paths only)')
    const separator = opts.apiKey.indexOf(':')
    const credentials = { accessKeyId: opts.apiKey.slice(0, separator), secretAccessKey: opts.apiKey.slice(separator + 1) }
    const api = new URL(opts.apiUrl)
    return chunks(targets.paths, BATCH).map((batch): ProviderCall => {
      const body = '<?xml version="1.0" encoding="UTF-8"?>' +
        `<InvalidationBatch xmlns="http://cloudfront.amazonaws.com/doc/${API_VERSION}/">` +
        `<CallerReference>${randomUUID()}</CallerReference>` +
        `<Paths><Quantity>${batch.length}</Quantity><Items>${batch.map((p) => `<Path>${xml(p)}</Path>`).join('')}</Items></Paths>` +
        '</InvalidationBatch>'
      const path = `/${API_VERSION}/distribution/${opts.zoneId}/invalidation`
      const signed = aws4.sign({
        host: api.host, path, method: 'POST', service: 'cloudfront', region: 'us-east-1', body,
        headers: { 'content-type': 'text/xml' }
      }, credentials)
      const headers: Record<string, string> = {}
      for (const [name, value] of Object.entries(signed.headers ?? {})) {
        // undici sets Host and Content-Length from the request itself.
        if (name.toLowerCase() !== 'host' && name.toLowerCase() !== 'content-length') headers[name.toLowerCase()] = String(value)
      }
      return { url: `${api.origin}${path}`, headers, body, targets: batch }
    })
  },
  accepted (status, body) {
    const id = element(body, 'Id')
    return { ok: status === 201, ...(id ? { id } : {}) }
  },
  describe (status, body) {
    const words = [element(body, 'Code'), element(body, 'Message')].filter(Boolean).join(': ')
    return `HTTP ${status}${words ? `: ${words}` : ''}`
  }
}
