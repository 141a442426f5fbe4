import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'

export interface BentoOptions {
  redisUrl: string
  prefix: string
  /** The in-process tier (L1) and the Redis bus that keeps it coherent; false for Redis alone. @default true */
  local?: boolean
  /** ioredis `enableAutoPipelining` on the cache's client (not the bus's). @default false */
  autoPipelining?: boolean
  /** Seconds. @default 300 */
  ttl?: number
  /**
   * The L1 keeps JSON text instead of the objects themselves. bentocache's fastest mode (false) crashes a read
   * with "Cannot read properties of undefined (reading 'deserialize')" once an L2 hit has refilled the L1
   * (bentocache issue 111, open against 1.6.1): an L1 that evicts, or that a bus empties, needs true.
   * @default false
   */
  serializeL1?: boolean
  /** Entries the L1 holds before it evicts the least recently used. @default 10000 */
  l1MaxItems?: number
}

/**
 * The cache of `npm run bench`'s alternative server. Its L1 keeps JSON text: entries evicted from the L1 (or
 * dropped by the bus) are read back from Redis into it, which bentocache's object mode does not survive.
 */
export const ALTERNATIVE_CACHE = { ttl: 300, autoPipelining: true, serializeL1: true } as const satisfies Partial<BentoOptions>

/**
 * bentocache as its documentation sets up a two-tier cache: an in-memory L1 that keeps the objects themselves
 * (`serialize: false`, its fastest mode, unless `serializeL1`), Redis as L2 (JSON text), and its Redis bus so that a write or a delete
 * on one instance drops the others' L1 copies. Returns the cache and a function that closes it and its clients.
 */
export function createBentoCache (options: BentoOptions): { bento: BentoCache<{ cache: ReturnType<typeof bentostore> }>, close: () => Promise<void> } {
  const redis = new Redis(options.redisUrl, { enableAutoPipelining: options.autoPipelining ?? false })
  let store = bentostore()
  if (options.local ?? true) store = store.useL1Layer(memoryDriver({ maxItems: options.l1MaxItems ?? 10_000, serialize: options.serializeL1 ?? false }))
  store = store.useL2Layer(redisDriver({ connection: redis }))
  const url = new URL(options.redisUrl)
  if (options.local ?? true) store = store.useBus(redisBusDriver({ connection: { host: url.hostname, port: Number(url.port || 6379) } }))
  const bento = new BentoCache({ default: 'cache', prefix: options.prefix, ttl: `${options.ttl ?? 300}s`, stores: { cache: store } })
  return {
    bento,
    close: async () => {
      await bento.disconnectAll()
      if (redis.status !== 'end') redis.disconnect()
    }
  }
}

/**
 * A cached GET through bentocache, answered as the api answers one: the serialized body and its ETag are what is
 * cached (text, since bentocache writes JSON to Redis), with the same ETag, cache-control and 304 handling.
 */
export async function sendThroughBento (bento: ReturnType<typeof createBentoCache>['bento'], request: FastifyRequest, reply: FastifyReply, options: { key: string, tags?: string[] }, load: () => Promise<unknown>): Promise<FastifyReply> {
  const { body, etag } = await bento.getOrSet({
    key: options.key,
    ...(options.tags ? { tags: options.tags } : {}),
    factory: async () => {
      const text = reply.serialize(await load()) as string
      return { body: text, etag: `"${createHash('sha1').update(text).digest('base64url')}"` }
    }
  }).catch((error: unknown) => {
    // bentocache wraps what the loader threw (a 404 among them) in a FactoryError of its own.
    throw (error as { cause?: unknown }).cause ?? error
  })
  void reply.headers({ etag, 'x-cache': 'HIT', 'cache-control': 'private, no-cache' })
  if (request.headers['if-none-match'] === etag) return reply.code(304).send()
  return reply.header('content-type', 'application/json; charset=utf-8').send(body)
}
