import { decode, stateToken, type Decoded } from './codec.js'
import type { RedisHit, RedisTier } from './redis-tier.js'
import { fullKey, UNLINKED_LOCAL_TTL_MS, type CacheCore, type KeyRead } from './core.js'
import type { LocalEntry } from './local-tier.js'

/** An entry read from Redis whose tags are current; `freshMs` may be 0 or less (within its grace). */
export interface RedisEntry {
  value: unknown
  tags: Record<string, number> | undefined
  freshMs: number
  pttl: number
  size: number
}

/** One key's Redis state as a load needs it: the entry (if any and current) and the token its fill compares with. */
export interface RedisRead {
  /** False when Redis could not be read: the load must not write it either. */
  read: boolean
  token: Buffer
  entry: RedisEntry | undefined
}

/** A fresh local entry (counted as a hit), without counting a miss: the caller goes on to the next tier. */
export function localHit (core: CacheCore, key: string): LocalEntry | undefined {
  if (core.closed || !core.options.localEnabled) return undefined
  const entry = core.local.get(key)
  if (entry !== undefined && (entry.tags === undefined || core.tags.current(entry.tags))) {
    core.stats.localHits++
    core.warming?.hit(key, entry)
    return entry
  }
  return undefined
}

/** A local hit, or a counted local miss. */
export function localFresh (core: CacheCore, key: string): { value: unknown } | undefined {
  const hit = localHit(core, key)
  if (!hit && core.options.localEnabled) core.stats.localMisses++
  if (!hit) core.warming?.touch(key)
  return hit
}

function decodeEntry (core: CacheCore, bytes: Buffer): Decoded | undefined {
  const envelope = decode(bytes)
  if (!envelope && bytes[1] !== 0x00) core.stats.decodeErrors++
  return envelope
}

/**
 * The remaining fresh and total lifetime of a decoded entry: from the expiry it carries, against this instance's
 * clock (a skew of S ms between writer and reader shifts both by at most S), or from Redis's PTTL for an entry of
 * an earlier version. Undefined when it is past its grace period here, even if Redis still holds it.
 */
function lifetime (hit: RedisHit, envelope: Decoded, now: number): { freshMs: number, pttl: number } | undefined {
  if (envelope.graceUntil === undefined || envelope.freshUntil === undefined) {
    return hit.pttl === undefined ? undefined : { freshMs: hit.pttl - envelope.g, pttl: hit.pttl }
  }
  const pttl = envelope.graceUntil - now
  return pttl > 0 ? { freshMs: envelope.freshUntil - now, pttl } : undefined
}

/** Reads one key for a load; Redis failures are counted by the tier and answered with `read: false`. */
export async function readForLoad (core: CacheCore, key: string): Promise<RedisRead> {
  // A key whose invalidation Redis has not taken: its Redis copy may be the old value, and writing over it waits for
  // the replay (which buries it), so the loader answers and its value stays local.
  if (!core.tier || core.pending.has(key)) return { read: false, token: stateToken(undefined), entry: undefined }
  try {
    const [hit] = await core.tier.getMany([fullKey(core, key)])
    const token = stateToken(hit?.bytes)
    const envelope = hit ? decodeEntry(core, hit.bytes) : undefined
    const left = hit && envelope ? lifetime(hit, envelope, Date.now()) : undefined
    if (!hit || !envelope || !left || !core.tags.current(envelope.t, await core.tags.of(Object.keys(envelope.t ?? {})))) return { read: true, token, entry: undefined }
    return { read: true, token, entry: { value: envelope.v, tags: envelope.t, freshMs: left.freshMs, pttl: left.pttl, size: hit.bytes.length } }
  } catch {
    return { read: false, token: stateToken(undefined), entry: undefined }
  }
}

/** With `warming`: not a read (no hits or misses counted); counts the local copies made instead. */
export async function readMany (core: CacheCore, keys: string[], startSeq: number, warming?: { count: number }): Promise<Array<{ value: unknown } | undefined>> {
  if (!core.tier) return keys.map(() => undefined)
  // Keys whose invalidation Redis has not taken are misses here, not read (see readForLoad).
  const skipped = core.pending.empty ? undefined : keys.map((key) => core.pending.has(key))
  const asked = skipped ? keys.filter((_key, i) => skipped[i] !== true) : keys
  let hits
  try {
    hits = asked.length > 0 ? await core.tier.getMany(asked.map((k) => fullKey(core, k))) : []
  } catch {
    return keys.map(() => undefined)
  }
  const envelopes = hits.map((hit) => (hit ? decodeEntry(core, hit.bytes) : undefined))
  // The generations of every tag of the batch in one go: warming reads hundreds of tagged entries at a time.
  const tags = [...new Set(envelopes.flatMap((e) => Object.keys(e?.t ?? {})))]
  const known = tags.length > 0 ? await core.tags.of(tags) : undefined
  const now = Date.now()
  const answers = hits.map((hit, i) => served(core, asked[i] as string, hit, envelopes[i], known, now, startSeq, warming))
  if (!skipped) return answers
  let next = 0
  return skipped.map((skip) => (skip ? undefined : answers[next++]))
}

/**
 * `readMany` of one key, as `get` asks: the same verdict, without the arrays and the tag set a batch needs (a
 * Redis hit is the common case of a read with the local tier off or cold). A read of the key already in flight is
 * shared: a hot key asked by many requests at once costs one round trip and one decode, and the value, as a local
 * hit's, is the same object for each of them. Only a read that no change recorded since it began may touch is shared:
 * every write, delete, invalidation (own or received) and refused write this instance records is a change, once as it
 * begins and again once Redis answered, so a get asked after one of them resolved never shares a read begun before;
 * a change of other keys only does not stop the sharing, one of any pattern, tag or everything does
 * (`ChangeHistory.untouchedSince`). And only one younger than half the Redis budget: a caller that joins keeps at
 * least half of its own.
 */
export async function readOne (core: CacheCore, key: string, startSeq: number): Promise<{ value: unknown } | undefined> {
  if (!core.tier || core.pending.has(key)) return undefined
  const maxAgeMs = core.options.redisTimeoutMs / 2
  const joined = core.reads.join(key, startSeq, maxAgeMs)
  if (joined === undefined) return found(await core.reads.run(key, () => readOneNow(core, key, startSeq), startSeq, maxAgeMs))
  const read = await joined
  if (read === 'miss') core.stats.redisMisses++
  else if (read !== 'unread') core.stats.redisHits++
  return found(read)
}

function found (read: KeyRead): { value: unknown } | undefined {
  return typeof read === 'object' ? read : undefined
}

async function readOneNow (core: CacheCore, key: string, startSeq: number): Promise<KeyRead> {
  let hit
  try {
    hit = await (core.tier as RedisTier).get(fullKey(core, key))
  } catch {
    return 'unread'
  }
  const envelope = hit ? decodeEntry(core, hit.bytes) : undefined
  const tags = envelope?.t === undefined ? undefined : Object.keys(envelope.t)
  const known = tags !== undefined && tags.length > 0 ? await core.tags.of(tags) : undefined
  return served(core, key, hit, envelope, known, Date.now(), startSeq, undefined) ?? 'miss'
}

/** One key of a read: a fresh entry with current tags is a hit (copied to the local tier), anything else a miss. */
function served (core: CacheCore, key: string, hit: RedisHit | undefined, envelope: Decoded | undefined, known: Record<string, number> | undefined, now: number, startSeq: number, warming: { count: number } | undefined): { value: unknown } | undefined {
  const left = hit && envelope ? lifetime(hit, envelope, now) : undefined
  if (!hit || !envelope || !left || left.freshMs <= 0 || !core.tags.current(envelope.t, known)) {
    if (!warming) core.stats.redisMisses++
    return undefined
  }
  const stored = storeLocal(core, key, { value: envelope.v, tags: envelope.t, freshMs: left.freshMs, pttl: left.pttl, size: hit.bytes.length }, startSeq)
  if (!warming) {
    core.stats.redisHits++
    core.warming?.redisHit(key, left.freshMs)
  } else if (stored) warming.count++
  return { value: envelope.v }
}

/**
 * A local copy stays fresh at most localTtl and is gone no later than the Redis entry. True when stored. Refresh-ahead
 * learns the entry's Redis freshness here even with the local tier off.
 */
export function storeLocal (core: CacheCore, key: string, entry: RedisEntry, startSeq: number, ttlSeconds?: number): boolean {
  const ahead = core.warming?.stored(key, entry.freshMs, ttlSeconds)
  if (!core.options.localEnabled || core.history.changedSince(key, entry.tags ? Object.keys(entry.tags) : undefined, startSeq)) return false
  const fresh = Math.min(entry.freshMs, core.linked() ? core.options.localTtl * 1000 : UNLINKED_LOCAL_TTL_MS)
  const lifetime = Math.min(entry.pttl, fresh + (entry.pttl - entry.freshMs))
  core.local.set(key, { value: entry.value, staleUntil: Date.now() + lifetime, tags: entry.tags, ...(ahead ? { ahead } : {}) }, fresh, entry.size)
  return true
}
