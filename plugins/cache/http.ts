import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { replyHeaderObject } from '../chassis/index.js'
import type { CacheManager, CacheSource } from './cache-manager.js'

export interface CachedResponse {
  body: Buffer
  etag: string
}

export interface SendCachedOptions {
  /** Cache key of this response (after the manager's prefix). */
  key: string
  ttl?: number
  tags?: string[]
}

const SOURCE_HEADER: Record<CacheSource, string> = { local: 'HIT-LOCAL', redis: 'HIT-REDIS', loader: 'MISS', stale: 'STALE' }

function matches (ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

/**
 * Answers a GET from the cache. What is cached is the serialized body (through the route's response schema) and
 * its ETag, so a hit costs no serialization; If-None-Match gets 304. `x-cache` tells the operator where it came from.
 * A local hit is answered before this returns, which then returns undefined, not a promise: from a handler that is
 * not async either, Fastify has nothing to wait on (returning the reply from async functions made the promise of
 * each adopt the reply as a thenable, a chain of microtasks on every hit). Otherwise (a miss, or an onSend hook
 * still running) a promise settled once the reply is sent, so a handler may return or await it.
 */
export function sendCached (cache: CacheManager, request: FastifyRequest, reply: FastifyReply, options: SendCachedOptions, load: () => Promise<unknown>): Promise<undefined> | undefined {
  const local = cache.peek<CachedResponse>(options.key)
  if (local === undefined) return sendThroughTiers(cache, request, reply, options, load)
  respond(request, reply, local, 'local')
  // An async onSend hook (read-your-writes, with replicas) leaves the reply unsent here. A promise that settled now
  // would let Fastify take `undefined` as the handler's answer and send it again (ERR_HTTP_HEADERS_SENT, a 500 in
  // the log): the reply itself, a thenable settled once it is sent, is returned then.
  return reply.sent ? undefined : untilSent(reply)
}

async function untilSent (reply: FastifyReply): Promise<undefined> {
  await reply
  return undefined
}

async function sendThroughTiers (cache: CacheManager, request: FastifyRequest, reply: FastifyReply, options: SendCachedOptions, load: () => Promise<unknown>): Promise<undefined> {
  const serialize = serializerOf(reply)
  const { value, source } = await cache.getOrSetWithSource<CachedResponse>(options.key, async () => {
    const body = Buffer.from(serialize(await load()))
    return { body, etag: `"${createHash('sha1').update(body).digest('base64url')}"` }
  }, { ...(options.ttl !== undefined ? { ttl: options.ttl } : {}), ...(options.tags ? { tags: options.tags } : {}) })
  respond(request, reply, value, source)
  if (!reply.sent) await reply
  return undefined
}

/**
 * The route's serializer for a 200, as `reply.serialize` picks it (the 200, 2xx or default response schema, else
 * JSON). Not `reply.serialize` itself: the loader outlives the request (refresh-ahead and the re-run after a Redis
 * flush call it later), so it must hold neither the request nor the reply, and a reload must not take the status of
 * the answer that noted it (a 304 has no schema, so its body would skip the response schema).
 */
function serializerOf (reply: FastifyReply): (payload: unknown) => string {
  for (const status of ['200', '2xx', 'default']) {
    const fn = reply.getSerializationFunction(status) as unknown
    if (typeof fn === 'function') return fn as (payload: unknown) => string
    const json = (fn as Record<string, unknown> | undefined)?.['application/json']
    if (typeof json === 'function') return json as (payload: unknown) => string
  }
  return JSON.stringify
}

function respond (request: FastifyRequest, reply: FastifyReply, value: CachedResponse, source: CacheSource): void {
  // Into the reply's own header object when it is found (lower-case names, no lookup each), else through `headers`.
  const own = replyHeaderObject(reply)
  const h = own ?? {}
  h.etag = value.etag
  h['x-cache'] = SOURCE_HEADER[source]
  h['cache-control'] = 'private, no-cache'
  const notModified = matches(request.headers['if-none-match'], value.etag)
  if (!notModified) h['content-type'] = 'application/json; charset=utf-8'
  if (own === undefined) void reply.headers(h)
  if (notModified) void reply.code(304).send()
  else void reply.send(value.body)
}
