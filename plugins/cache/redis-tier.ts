import calculateSlot from 'cluster-key-slot'
import type { Redis } from 'ioredis'
import { defineScript, holdUntilTickEnd, isCluster, withBudget, type CircuitBreaker, type RedisClient } from '../redis/index.js'
import { needsTtl } from './codec.js'
import { escapeGlob } from './glob.js'
import type { CacheCounters } from './stats.js'

// The remaining TTL of each key, for reads of several entries an earlier version wrote: one script call whatever their number. The values
// themselves never go through Lua: Redis 7 copies a bulk string into Lua and back out, which cost about 20 µs of
// Redis CPU for an 8 KB entry against 1 µs for a plain GET (INFO commandstats), on every Redis hit.
const TTLS_LUA = `
local out = {}
for i = 1, #KEYS do out[i] = redis.call('PTTL', KEYS[i]) end
return out`

// Compare-and-set on the state token (first 18 bytes) the reader saw: a delete in between left a new tombstone,
// so a loader that read the database before that delete cannot write its old value back.
const FILL_LUA = `
local cur = redis.call('GET', KEYS[1])
local token = ''
if cur then token = string.sub(cur, 1, 18) end
if token ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

// Instances of one cache announce themselves in a sorted set scored by their last heartbeat; in a cluster,
// PUBLISH counts only the receivers on one node, so this is how a publisher knows how many acks to wait for.
const PRESENCE_LUA = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])`

// A change in one round trip: each tag's generation counted up (never below the floor this instance already saw
// for it, when Redis lost its counters, and then the counter is set to it), each key replaced by its own tombstone, and the bus message published with
// the new generations written into it. KEYS: the n tag counters, then the keys to bury. ARGV: n, the tombstones' TTL
// (ms), the channel ('' for none), the message up to its tags (JSON without its closing brace), the n floors, the n
// tag names as JSON strings, then one tombstone per key. Returns the n generations and PUBLISH's receivers (-1 when
// nothing was published).
const INVALIDATE_LUA = `
local n = tonumber(ARGV[1])
local out = {}
local tags = {}
for i = 1, n do
  local gen = redis.call('INCR', KEYS[i])
  local floor = tonumber(ARGV[4 + i])
  -- Raised in Redis too: left behind, the counter would hand an instance that never saw the floor (one started since,
  -- or that missed the message) a generation below it, which the others would ignore as old.
  if floor > gen then
    redis.call('SET', KEYS[i], floor)
    gen = floor
  end
  out[i] = gen
  tags[i] = ARGV[4 + n + i] .. ':' .. string.format('%d', gen)
end
for i = n + 1, #KEYS do redis.call('SET', KEYS[i], ARGV[4 + n + i], 'PX', ARGV[2]) end
out[n + 1] = -1
if ARGV[3] ~= '' then
  local message = ARGV[4]
  if n > 0 then message = message .. ',"tags":{' .. table.concat(tags, ',') .. '}' end
  out[n + 1] = redis.call('PUBLISH', ARGV[3], message .. '}')
end
return out`

// A tag's generation counted up, never below the floor (the generation after the one the instance has seen), which
// is set in Redis when the counter was lost: left behind, it would hand an instance that never saw the floor a lower
// generation, which the others would ignore as old. One key per call, so it holds in a cluster.
const TAG_INCR_LUA = `
local gen = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if floor > gen then
  redis.call('SET', KEYS[1], floor)
  gen = floor
end
return gen`

interface ScriptCommands {
  chassisCacheTagIncr: (key: string, floor: number) => Promise<number>
  chassisCacheInvalidate: (numKeys: number, ...args: Array<string | number | Buffer>) => Promise<number[]>
  chassisCacheTtls: (numKeys: number, ...keys: string[]) => Promise<number[]>
  chassisCacheFill: (key: string, token: Buffer, payload: Buffer, px: number) => Promise<number>
  chassisCachePresence: (key: string, now: number, id: string, ttlMs: number) => Promise<number>
}

export interface RedisHit {
  bytes: Buffer
  /** Redis's remaining TTL, asked only for entries that do not carry their expiry; undefined otherwise. */
  pttl: number | undefined
}

function groupBySlot<T> (items: T[], keyOf: (item: T) => string, cluster: boolean): T[][] {
  if (!cluster) return items.length === 0 ? [] : [items]
  const groups = new Map<number, T[]>()
  for (const item of items) {
    const slot = calculateSlot(keyOf(item))
    const group = groups.get(slot)
    if (group) group.push(item)
    else groups.set(slot, [item])
  }
  return [...groups.values()]
}

/**
 * The Redis tier. Every command runs under the circuit breaker and a time budget, so a slow or absent Redis costs
 * a request at most the budget, and nothing once the breaker is open. In a cluster, keys are grouped by slot.
 */
export class RedisTier {
  readonly client: RedisClient
  readonly #cluster: boolean
  readonly #timeoutMs: number
  readonly #breaker: CircuitBreaker
  readonly #stats: CacheCounters

  constructor (client: RedisClient, timeoutMs: number, breaker: CircuitBreaker, stats: CacheCounters) {
    this.client = client
    this.#cluster = isCluster(client)
    this.#timeoutMs = timeoutMs
    this.#breaker = breaker
    this.#stats = stats
    defineScript(client, 'chassisCacheTtls', { lua: TTLS_LUA })
    defineScript(client, 'chassisCacheFill', { numberOfKeys: 1, lua: FILL_LUA })
    defineScript(client, 'chassisCachePresence', { numberOfKeys: 1, lua: PRESENCE_LUA })
    defineScript(client, 'chassisCacheInvalidate', { lua: INVALIDATE_LUA })
    defineScript(client, 'chassisCacheTagIncr', { numberOfKeys: 1, lua: TAG_INCR_LUA })
  }

  get cluster (): boolean {
    return this.#cluster
  }

  get available (): boolean {
    return this.client.status === 'ready' && this.#breaker.state !== 'open'
  }

  get #scripts (): ScriptCommands {
    return this.client as unknown as ScriptCommands
  }

  /**
   * The entries of `keys` in one round trip per slot (one in all for a standalone server): a `GET`, or one `MGET`.
   * Entries carry their logical expiry (codec.ts), so a hit needs nothing else. An entry of an earlier version
   * (kinds 1 and 2, no expiry inside) is read again with its remaining TTL: one more round trip, for those keys only,
   * while such entries last (at most their TTL after the upgrade).
   */
  async getMany (keys: string[]): Promise<Array<RedisHit | undefined>> {
    const out = new Array<RedisHit | undefined>(keys.length)
    const hit = (bytes: Buffer | null | undefined): RedisHit | undefined => (bytes && bytes.length > 0 ? { bytes, pttl: undefined } : undefined)
    if (keys.length === 1) {
      out[0] = await this.get(keys[0] as string)
      return out
    }
    const indexed = keys.map((key, i) => ({ key, i }))
    const legacy: Array<{ key: string, i: number }> = []
    await Promise.all(groupBySlot(indexed, (x) => this.#stored(x.key), this.#cluster).map(async (group) => {
      const values = await this.#run(() => this.#corked(() => this.#read('mget', group.map((x) => x.key)) as Promise<Array<Buffer | null>>))
      group.forEach((x, j) => {
        const bytes = values[j]
        if (bytes && needsTtl(bytes)) legacy.push(x)
        else out[x.i] = hit(bytes)
      })
    }))
    if (legacy.length > 0) {
      const again = await this.#withTtls(legacy.map((x) => x.key))
      legacy.forEach((x, j) => { out[x.i] = again[j] })
    }
    return out
  }

  /** One entry, as `getMany` reads each: a `GET`, and for an entry of an earlier version its TTL as well. */
  async get (key: string): Promise<RedisHit | undefined> {
    const bytes = await this.#run(() => this.#corked(() => this.#read('get', [key]) as Promise<Buffer | null>, false))
    if (bytes && needsTtl(bytes)) return (await this.#withTtls([key]))[0]
    return bytes && bytes.length > 0 ? { bytes, pttl: undefined } : undefined
  }

  /**
   * Values with their remaining TTLs, for entries that do not carry their expiry: the TTLs are asked first, then
   * the values, on one connection, so Redis answers them in that order. A key rewritten between the two is paired
   * with the TTL of the entry it replaced, which for the same TTL setting is the shorter one: a local copy then
   * expires early, never late. A key that had no TTL (absent) when asked is a miss, whatever the GET saw.
   */
  async #withTtls (keys: string[]): Promise<Array<RedisHit | undefined>> {
    const out = new Array<RedisHit | undefined>(keys.length)
    const hit = (bytes: Buffer | null | undefined, pttl: number | undefined): RedisHit | undefined =>
      bytes && bytes.length > 0 && pttl !== undefined && pttl !== -2 ? { bytes, pttl: pttl < 0 ? Number.POSITIVE_INFINITY : pttl } : undefined
    if (keys.length === 1) {
      const key = keys[0] as string
      const [pttl, bytes] = await this.#run(() => this.#corked(() => Promise.all([this.client.pttl(key), this.client.getBuffer(key)])))
      out[0] = hit(bytes, pttl)
      return out
    }
    const indexed = keys.map((key, i) => ({ key, i }))
    await Promise.all(groupBySlot(indexed, (x) => this.#stored(x.key), this.#cluster).map(async (group) => {
      const names = group.map((x) => x.key)
      const [ttls, values] = await this.#run(() => this.#corked(() => Promise.all([this.#scripts.chassisCacheTtls(names.length, ...names), this.client.mgetBuffer(names)])))
      group.forEach((x, j) => { out[x.i] = hit(values[j], ttls[j]) })
    }))
    return out
  }

  /**
   * A `GET` or `MGET` of raw bytes, sent as it is called even on a client with auto-pipelining on: queued for the
   * client's auto-pipeline, a read waited for its flush (setImmediate) and then carried the client's backstop timer,
   * set as the pipeline is written, after #corked has put the option back; a Redis hit measured about a tenth
   * slower so (`npm run bench:cache -- --only micro --group redis`). A read shares no ordering with the writes that
   * may wait in that pipeline: none of them has been answered yet.
   */
  #read (name: 'get' | 'mget', keys: string[]): Promise<unknown> {
    const send = (): Promise<unknown> => name === 'get' ? this.client.getBuffer(keys[0] as string) : this.client.mgetBuffer(keys)
    const client = this.#cluster ? undefined : this.client as Redis
    if (client?.options.enableAutoPipelining !== true) return send()
    // ioredis reads the switch as the command is called and then builds it as it builds every other (key prefix,
    // error stack): off for this one synchronous call, the command is written at once.
    client.options.enableAutoPipelining = false
    try {
      return send()
    } finally {
      client.options.enableAutoPipelining = true
    }
  }

  /**
   * Commands sent within `send` leave in one write to the socket instead of one each (a system call apiece, about
   * a tenth of a Redis hit's CPU). ioredis writes a command as it is called when auto-pipelining is off; with it on,
   * it batches them itself and this does nothing. A single command has nothing to share a write with: `cork` false
   * skips the stream's buffering of it.
   */
  #corked<T> (send: () => T, cork = true): T {
    const client = this.#cluster ? undefined : this.client as Redis
    const stream = client?.stream
    if (cork) stream?.cork()
    // A read runs under the budget, whose hard cap bounds it: the client's 10 s backstop timer (one setTimeout and
    // clearTimeout per command, which measured about a sixth of a Redis hit's CPU) adds nothing here. ioredis reads
    // the option as it sends a command, synchronously when auto-pipelining is off.
    const backstop = client?.options.commandTimeout
    if (client) client.options.commandTimeout = undefined
    try {
      return send()
    } finally {
      if (client) client.options.commandTimeout = backstop
      if (cork) stream?.uncork()
      if (stream !== undefined) holdUntilTickEnd(stream)
    }
  }

  /** Writes only when the key is still in the state the reader saw; false when a delete came in between. */
  async fill (key: string, token: Buffer, payload: Buffer, pxMs: number): Promise<boolean> {
    return (await this.#run(() => this.#scripts.chassisCacheFill(key, token, payload, Math.ceil(pxMs)))) === 1
  }

  /** Unconditional writes in pipelines of at most 500 commands, grouped by slot in a cluster. */
  async setMany (entries: Array<{ key: string, payload: Buffer, pxMs: number }>): Promise<void> {
    const chunks: Array<typeof entries> = []
    for (const group of groupBySlot(entries, (e) => this.#stored(e.key), this.#cluster)) {
      for (let i = 0; i < group.length; i += 500) chunks.push(group.slice(i, i + 500))
    }
    await Promise.all(chunks.map((chunk) => this.#run(async () => {
      const pipeline = this.client.pipeline()
      for (const e of chunk) pipeline.set(e.key, e.payload, 'PX', Math.ceil(e.pxMs))
      const results = await pipeline.exec()
      const failed = results?.find(([err]) => err)
      if (failed?.[0]) throw failed[0]
    })))
  }

  /** Replaces each key with a tombstone that lives `pxMs`. */
  async bury (keys: string[], tomb: () => Buffer, pxMs: number): Promise<void> {
    await this.setMany(keys.map((key) => ({ key, payload: tomb(), pxMs })))
  }

  /** The client's `keyPrefix` as text: ioredis takes a Buffer too, and prefixes the keys with its bytes. */
  get #keyPrefix (): string {
    const prefix = (this.client.options as { keyPrefix?: string | Buffer }).keyPrefix
    return prefix === undefined ? '' : String(prefix)
  }

  /** A key as Redis holds it: with the client's `keyPrefix`, which decides its cluster slot. */
  #stored (key: string): string {
    return this.#keyPrefix + key
  }

  /**
   * SCAN + UNLINK in batches on every master: never KEYS, never blocking the server. ioredis adds a client's
   * `keyPrefix` to the keys of a command but not to a SCAN pattern, and hands back the keys it finds whole: the
   * pattern gets the prefix here, and the keys lose it before UNLINK adds it again.
   */
  async deleteMatching (match: string): Promise<number> {
    const nodes: Redis[] = isCluster(this.client) ? this.client.nodes('master') : [this.client]
    const prefix = this.#keyPrefix
    let deleted = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, found] = await this.#run(() => node.scan(cursor, 'MATCH', `${escapeGlob(prefix)}${match}`, 'COUNT', 1000))
        cursor = next
        // Grouped by the slots of the keys as Redis holds them, prefix and all.
        for (const group of groupBySlot(found, (k) => k, this.#cluster)) {
          const keys = prefix === '' ? group : group.map((key) => key.slice(prefix.length))
          deleted += await this.#run(() => (this.#cluster ? this.client : node).unlink(...keys))
        }
      } while (cursor !== '0')
    }
    return deleted
  }

  /**
   * A change's tags (a dozen for a lead's PATCH) leave in one socket write, under one budget: each counted up, and
   * raised to its floor in `floors` (TAG_INCR_LUA) when Redis lost it.
   */
  async incr (keys: string[], floors: number[]): Promise<number[]> {
    return this.#run(() => this.#corked(() => Promise.all(keys.map((k, i) => this.#scripts.chassisCacheTagIncr(k, floors[i] ?? 0)))))
  }

  /**
   * A write's invalidation in one round trip on a standalone server (INVALIDATE_LUA): the tags' new generations,
   * never below `floors`, the keys' tombstones, and, with a `channel`, the bus message `head` completed with those
   * generations. Three round trips before (the INCRs, the SETs, the PUBLISH): for a lead's PATCH, each a socket write
   * and a read for the api and an event-loop turn for Redis. Not for a cluster, whose keys span slots.
   */
  async invalidate (change: { tags: Array<{ key: string, name: string, floor: number }>, buried: Array<{ key: string, payload: Buffer }>, pxMs: number, channel: string, head: string }): Promise<{ gens: number[], receivers: number }> {
    const { tags, buried } = change
    const out = await this.#run(() => this.#corked(() => this.#scripts.chassisCacheInvalidate(
      tags.length + buried.length,
      ...tags.map((t) => t.key), ...buried.map((b) => b.key),
      tags.length, Math.ceil(change.pxMs), change.channel, change.head,
      ...tags.map((t) => t.floor), ...tags.map((t) => JSON.stringify(t.name)), ...buried.map((b) => b.payload)
    ), false))
    return { gens: out.slice(0, tags.length), receivers: out[tags.length] ?? -1 }
  }

  async getNumbers (keys: string[]): Promise<number[]> {
    const values = await this.#run(() => this.#corked(() => Promise.all(keys.map((k) => this.client.get(k)))))
    return values.map((v) => Number(v) || 0)
  }

  /** Records this instance as alive and returns how many instances are. */
  async presence (key: string, id: string, ttlMs: number): Promise<number> {
    return this.#run(() => this.#scripts.chassisCachePresence(key, Date.now(), id, ttlMs))
  }

  async leave (key: string, id: string): Promise<void> {
    await this.#run(() => this.client.zrem(key, id))
  }

  async publish (channel: string, message: string): Promise<number> {
    return this.#run(() => this.client.publish(channel, message))
  }

  /** Any command under the same breaker, budget and counters, for the cache's other parts (hot keys, warming). */
  async run<T> (command: (client: RedisClient) => Promise<T>): Promise<T> {
    return this.#run(() => command(this.client))
  }

  /** One command under the breaker and the budget (the redis plugin's `withBudget`), counted per tier. */
  async #run<T> (command: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      const result = await withBudget(this.#breaker, this.#timeoutMs, command)
      this.#stats.redisRoundTrips++
      this.#stats.redisLatency.add(performance.now() - started)
      return result
    } catch (error) {
      this.#stats.redisErrors++
      if ((error as { code?: string }).code === 'REDIS_TIMEOUT' || /timed? ?out/i.test((error as Error).message)) this.#stats.redisTimeouts++
      throw error
    }
  }
}
