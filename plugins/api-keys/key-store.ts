import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { ConnectionPool } from '../db-pool/index.js'
import { LRUCache } from 'lru-cache'
import type { CacheManager } from '../cache/index.js'

/** What a verified key grants. */
export interface ApiKeyIdentity {
  id: string
  name: string
  scopes: string[]
}

export interface VerifyOptions {
  /** Runs before a lookup a key needs (see `verify`); throw to refuse the request instead. */
  beforeLookup?: () => Promise<void>
}

export interface MintedKey extends ApiKeyIdentity {
  /** The whole key, `lck_<id>_<secret>`: shown once, never stored. */
  key: string
}

/** A change the database announced: one key revoked or altered, or every key (the table was truncated). */
export type KeyChange = { id: string, revoked: boolean } | { all: true }

interface StoredKey {
  name: string
  hash: string
  scopes: string[]
  revoked: boolean
}

const KEY = /^lck_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$/
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function publicId (): string {
  const bytes = randomBytes(12)
  return Array.from(bytes, (b) => ALPHANUMERIC[b % ALPHANUMERIC.length]).join('')
}

/** A shared lookup that never ran: the caller who started it was over its lookup budget. */
const REFUSED: unique symbol = Symbol('refused by its budget')

// The secret has 256 bits of entropy, so a plain SHA-256 is enough: a slow password hash protects guessable secrets.
function hashSecret (secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}

/**
 * API keys in PostgreSQL, stored as hashes and compared in constant time. Verified keys are cached (through the
 * cache manager); the database announces every revocation (`followKeyChanges`), which drops the cached verdict on
 * every instance, with or without Redis.
 */
export class ApiKeyStore {
  readonly #db: ConnectionPool
  readonly #cache: CacheManager | undefined
  readonly #cacheTtl: number
  // Keys verified against the cached record they were checked with; a revocation replaces or drops that record,
  // which ends the memo's validity without a hash per request.
  // Also what tells a key verified here before (it is not charged to its caller's budget again).
  // The record's cache key is kept with it: built once, not for every request that presents the key.
  readonly #verified = new LRUCache<string, { stored: StoredKey, identity: ApiKeyIdentity, cacheKey: string }>({ max: 10000 })
  readonly #lookups = new Map<string, Promise<StoredKey | null | typeof REFUSED>>()
  // Ids PostgreSQL did not know, for a short while and apart from the shared cache, so that a client repeating a
  // wrong key costs no lookup while invented keys cannot push warm entries out of the cache.
  readonly #unknown: LRUCache<string, true> | undefined
  // Ids heard revoked lately: a verification that read the row just before the revocation committed is refused
  // all the same, and a WebSocket accepted in that instant is closed on arrival.
  readonly #revoked = new LRUCache<string, true>({ max: 10000, ttl: 60_000 })
  readonly #changeListeners = new Set<(change: KeyChange) => void>()
  readonly #resyncListeners = new Set<() => void>()
  // False while revocations cannot be heard (the database link is down): every verification then reads PostgreSQL.
  #cacheTrusted = true
  #trustEpoch = 0

  constructor (db: ConnectionPool, cache?: CacheManager, cacheTtlSeconds = 30) {
    this.#db = db
    this.#cache = cache
    this.#cacheTtl = cacheTtlSeconds
    this.#unknown = cacheTtlSeconds > 0 ? new LRUCache({ max: 1000, ttl: cacheTtlSeconds * 1000 }) : undefined
  }

  async mint (name: string, scopes: string[] = []): Promise<MintedKey> {
    const bad = scopes.filter((s) => !/^[a-z][a-z0-9_.:-]{0,63}$/.test(s))
    if (bad.length > 0) throw new Error(`invalid scope names: ${bad.join(', ')}`)
    const id = publicId()
    const secret = randomBytes(32).toString('base64url')
    this.#unknown?.delete(id)
    await this.#db.query('INSERT INTO api_keys (id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4)', [id, name, hashSecret(secret), scopes])
    return { id, name, scopes, key: `lck_${id}_${secret}` }
  }

  /** Revokes a key; false when there is no such active key. */
  async revoke (id: string): Promise<boolean> {
    const { rowCount } = await this.#db.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id])
    await this.#cache?.del(`apikey:${id}`)
    return (rowCount ?? 0) > 0
  }

  async list (): Promise<Array<ApiKeyIdentity & { createdAt: Date, revokedAt: Date | null }>> {
    const { rows } = await this.#db.query<ApiKeyIdentity & { createdAt: Date, revokedAt: Date | null }>(
      'SELECT id, name, scopes, created_at AS "createdAt", revoked_at AS "revokedAt" FROM api_keys ORDER BY created_at')
    return rows
  }

  /**
   * The identity of a key verified earlier whose cached record is still the one it was checked against, without
   * waiting; undefined when only `verify` can tell.
   */
  verifiedIdentity (key: string): ApiKeyIdentity | undefined {
    if (!this.#cacheTrusted) return undefined
    const memo = this.#verified.get(key)
    return memo && this.#cache?.peek(memo.cacheKey) === memo.stored ? memo.identity : undefined
  }

  /** True when this instance heard, within the last minute, that the key was revoked or deleted. */
  recentlyRevoked (id: string): boolean {
    return this.#revoked.has(id)
  }

  /** Calls `listener` for each change the database announces, after the key's cached verdict is gone. */
  onKeyChange (listener: (change: KeyChange) => void): () => void {
    this.#changeListeners.add(listener)
    return () => this.#changeListeners.delete(listener)
  }

  /** Applies a change announced by the database: the verdict is dropped here and in Redis, then listeners hear it. */
  async keyChanged (change: KeyChange): Promise<void> {
    if ('all' in change) {
      this.#verified.clear()
      this.#unknown?.clear()
    } else if (change.revoked) {
      this.#revoked.set(change.id, true)
    } else {
      this.#revoked.delete(change.id)
    }
    // Synchronous up to here and in the cache's local eviction, so no request verified after this call began
    // reuses the old verdict; the Redis tier and the other instances follow.
    const evicted = 'all' in change ? this.#cache?.deletePattern('apikey:*') : this.#cache?.del(`apikey:${change.id}`)
    for (const listener of this.#changeListeners) listener(change)
    await evicted
  }

  /**
   * Calls `listener` each time revocations are heard again after a gap (every cached verdict dropped by then):
   * whatever holds on to a key beyond one request checks it again (`activeKeys`).
   */
  onResync (listener: () => void): () => void {
    this.#resyncListeners.add(listener)
    return () => this.#resyncListeners.delete(listener)
  }

  /** The keys among `ids` that exist unrevoked now, with their scopes, read from PostgreSQL (never cached). */
  async activeKeys (ids: string[]): Promise<Map<string, string[]>> {
    if (ids.length === 0) return new Map()
    const { rows } = await this.#db.query<{ id: string, scopes: string[] }>('SELECT id, scopes FROM api_keys WHERE id = ANY($1) AND revoked_at IS NULL', [ids])
    return new Map(rows.map((r) => [r.id, r.scopes]))
  }

  /** Revocations can no longer be heard: stop reusing verdicts until `resync`. */
  distrustCache (): void {
    this.#cacheTrusted = false
    this.#trustEpoch++
  }

  /**
   * Revocations are heard again: drop every cached verdict (any may have been revoked unheard), then reuse them
   * again, unless the link was lost once more meanwhile.
   */
  async resync (): Promise<void> {
    const epoch = ++this.#trustEpoch
    this.#cacheTrusted = false
    this.#verified.clear()
    await this.#cache?.deletePattern('apikey:*')
    if (epoch !== this.#trustEpoch) return
    this.#cacheTrusted = true
    for (const listener of this.#resyncListeners) listener()
  }

  /**
   * The identity of a valid, unrevoked key; undefined for anything else. A malformed key is refused without a
   * lookup. `beforeLookup` runs once before a lookup that may reach Redis or PostgreSQL for a key this instance has
   * not verified before (concurrent requests with the same key share one lookup); its rejection ends the verification.
   */
  async verify (key: string, options: VerifyOptions = {}): Promise<ApiKeyIdentity | undefined> {
    const known = this.verifiedIdentity(key)
    if (known) return known
    const match = KEY.exec(key)
    if (!match) return undefined
    const [, id, secret] = match as unknown as [string, string, string]
    if (this.#revoked.has(id)) return this.#refuse(key)
    const stored = await this.#record(id, this.#verified.has(key) ? undefined : options.beforeLookup)
    // Read before a revocation that was heard while the read was under way: refused all the same.
    if (!stored || stored.revoked || this.#revoked.has(id)) return this.#refuse(key)
    const expected = Buffer.from(stored.hash, 'base64')
    const given = hashSecret(secret)
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return this.#refuse(key)
    const identity = Object.freeze({ id, name: stored.name, scopes: stored.scopes })
    this.#verified.set(key, { stored, identity, cacheKey: `apikey:${id}` })
    return identity
  }

  #refuse (key: string): undefined {
    this.#verified.delete(key)
    return undefined
  }

  async #record (id: string, beforeLookup: (() => Promise<void>) | undefined): Promise<StoredKey | null> {
    if (this.#unknown?.has(id)) return null
    const local = this.#cacheTrusted ? this.#cache?.peek<StoredKey | null>(`apikey:${id}`) : undefined
    if (local !== undefined) return local
    const pending = this.#lookups.get(id)
    if (pending) {
      const shared = await pending
      // The caller who started it was refused by its own budget: this one is charged to its own address instead
      // of receiving another address's 429.
      return shared === REFUSED ? this.#record(id, beforeLookup) : shared
    }
    let refusal: unknown
    const started = (beforeLookup ? beforeLookup() : Promise.resolve())
      .then(async (): Promise<StoredKey | null | typeof REFUSED> => this.#lookup(id), (error: unknown): typeof REFUSED => { refusal = error; return REFUSED })
      .finally(() => this.#lookups.delete(id))
    this.#lookups.set(id, started)
    const result = await started
    if (result === REFUSED) throw refusal
    return result
  }

  async #lookup (id: string): Promise<StoredKey | null> {
    const load = async (): Promise<StoredKey | null> => {
      const { rows } = await this.#db.query<{ name: string, secret_hash: Buffer, scopes: string[], revoked: boolean }>(
        'SELECT name, secret_hash, scopes, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = $1', [id], { read: 'primary' })
      const row = rows[0]
      return row ? { name: row.name, hash: row.secret_hash.toString('base64'), scopes: row.scopes, revoked: row.revoked } : null
    }
    // An unknown id is not put in the shared cache: invented keys would fill both tiers and evict warm entries.
    // While revocations cannot be heard, PostgreSQL is read every time.
    const stored = this.#cache && this.#cacheTrusted ? await this.#cache.getOrSet(`apikey:${id}`, load, { ttl: this.#cacheTtl, cacheIf: (found) => found !== null }) : await load()
    if (stored === null) this.#unknown?.set(id, true)
    return stored
  }
}
