import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyContextConfig, FastifyInstance, onSendHookHandler } from 'fastify'
import { publicDir } from '../../platform/paths.js'
import type { SchemaTypes } from '../../platform/schema-types.js'

/** The page loads its own script, style and schema, and posts to the api; nothing else. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
/** Content-hashed names never change content: a week at every cache, as the CDN rules say for /static/. */
const ASSET_CACHE_CONTROL = 'public, max-age=604800, immutable'
/** The HTML names the current assets, so it is cached briefly everywhere. */
const PAGE_CACHE_CONTROL = 'public, max-age=60'
/** The tag the CDNs purge the page by (Cloudflare's Cache-Tag, Fastly's Surrogate-Key). */
const PAGE_CACHE_TAG = 'lead-form'

// Static files are cheap and cached at the edge: the limiter is for the API. A file's If-Match or
// If-Unmodified-Since that fails is answered 412, a Range past its end 416 (@fastify/send).
const fileConfig = { rateLimit: false, errorCodes: { 412: ['PRECONDITION_FAILED'], 416: ['RANGE_NOT_SATISFIABLE'] } } as FastifyContextConfig
const unlimited = { rateLimit: false } as FastifyContextConfig

// The cache headers are set before the file is sent, and the file may still fail (a Range past its end: 416): an
// error must not be cached for a week at every cache, nor purged by the page's tag.
const uncachedErrors: onSendHookHandler = (_request, reply, payload, done) => {
  if (reply.statusCode >= 400) {
    void reply.header('cache-control', 'no-store')
    reply.removeHeader('cache-tag')
    reply.removeHeader('surrogate-key')
  }
  done(null, payload)
}

/** The lead-capture page (`/quote/`) and its assets (`/static/`), the origin NGINX's static_cache and the CDN sit in front of. */
export async function pageRoutes (instance: FastifyInstance): Promise<void> {
  const app = instance.withTypeProvider<SchemaTypes>()
  await app.register(fastifyStatic, { root: publicDir, serve: false, decorateReply: true })
  const tagged = { 'content-security-policy': PAGE_CSP, 'cache-tag': PAGE_CACHE_TAG, 'surrogate-key': PAGE_CACHE_TAG }
  // Built once before start; a name not built answers the platform's 404, never a cacheable one.
  const staticDir = join(publicDir, 'static')
  const assets = new Set(existsSync(staticDir) ? readdirSync(staticDir) : [])
  const page = existsSync(join(publicDir, 'quote', 'index.html'))

  app.get('/quote/', { config: fileConfig, onSend: uncachedErrors }, async (_request, reply) => {
    if (!page) return reply.callNotFound()
    void reply.headers({ ...tagged, 'cache-control': PAGE_CACHE_CONTROL })
    return reply.sendFile('index.html', join(publicDir, 'quote'), { cacheControl: false, lastModified: false })
  })
  app.get('/quote', { config: unlimited, schema: { response: { 301: { description: 'To /quote/', type: 'null' } } } }, async (_request, reply) => reply.redirect('/quote/', 301))

  app.get('/static/:file', {
    config: fileConfig,
    onSend: uncachedErrors,
    schema: { params: { type: 'object', properties: { file: { type: 'string', pattern: '^[a-z-]+\\.[0-9a-f]{12}\\.(js|css|json|svg)$' } }, required: ['file'] } }
  }, async (request, reply) => {
    if (!assets.has(request.params.file)) return reply.callNotFound()
    void reply.headers({ ...tagged, 'cache-control': ASSET_CACHE_CONTROL })
    return reply.sendFile(request.params.file, join(publicDir, 'static'), { cacheControl: false, lastModified: false })
  })
}
