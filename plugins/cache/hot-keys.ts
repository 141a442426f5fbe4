import type { RedisTier } from './redis-tier.js'
import { defineScript } from '../redis/index.js'

// Space-Saving (Metwally, Agrawal, El Abbadi) kept in a Redis sorted set: a key not yet tracked replaces the coldest
// one and inherits its score, so the set never grows past `cap` and every key read more often than 1/cap of all
// reads is in it, however many distinct keys there are. Returns the whole set, hottest first.
const RECORD_LUA = `
local cap = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local member = ARGV[i]
  local inc = tonumber(ARGV[i + 1])
  if redis.call('ZSCORE', KEYS[1], member) then
    redis.call('ZINCRBY', KEYS[1], inc, member)
  elseif redis.call('ZCARD', KEYS[1]) < cap then
    redis.call('ZADD', KEYS[1], inc, member)
  else
    local coldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    redis.call('ZREM', KEYS[1], coldest[1])
    redis.call('ZADD', KEYS[1], tonumber(coldest[2]) + inc, member)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZREVRANGE', KEYS[1], 0, cap - 1)`

/** Scores halve every minute, whatever the number of instances: one instance per interval applies the decay. */
const HALF_LIFE_MS = 60_000
/** A fleet that stopped reading leaves nothing behind for long. */
const IDLE_EXPIRY_MS = 24 * 3600_000

interface HotKeyCommands {
  chassisCacheHotRecord: (key: string, cap: number, expiryMs: number, ...pairs: Array<string | number>) => Promise<string[]>
}

/**
 * Which keys are hot, learnt from reads: each instance counts its reads in a bounded map and every interval adds the
 * counts to a decaying top-K in Redis (`<prefix>__hot`, out of the way of cache keys), which answers with the fleet's current hot set.
 */
export class HotKeys {
  readonly max: number
  readonly #tier: RedisTier
  readonly #setKey: string
  readonly #decayKey: string
  readonly #intervalMs: number
  readonly #counts = new Map<string, number>()
  #rank = new Map<string, number>()

  /** `intervalMs`: how often `flush` runs, which sets how much each decay takes off. */
  constructor (max: number, tier: RedisTier, prefix: string, intervalMs: number) {
    this.max = max
    this.#tier = tier
    this.#setKey = `${prefix}__hot`
    this.#decayKey = `${prefix}__hot:decay`
    this.#intervalMs = intervalMs
    defineScript(tier.client, 'chassisCacheHotRecord', { numberOfKeys: 1, lua: RECORD_LUA })
  }

  /** `reads` reads of `key`. */
  touch (key: string, reads = 1): void {
    const n = this.#counts.get(key)
    if (n !== undefined) {
      this.#counts.set(key, n + reads)
      return
    }
    if (this.#counts.size >= this.max) this.#trim()
    this.#counts.set(key, reads)
  }

  /** In the fleet's hot set as of the last flush. */
  isHot (key: string): boolean {
    return this.#rank.has(key)
  }

  /** 0 for the hottest key; Infinity for a key that is not hot. */
  rank (key: string): number {
    return this.#rank.get(key) ?? Number.POSITIVE_INFINITY
  }

  /** Keys counted locally since the last flush (at most `max`). */
  get tracked (): number {
    return this.#counts.size
  }

  get hotCount (): number {
    return this.#rank.size
  }

  /** Adds this instance's counts to the fleet's and learns the fleet's hot set; counts are dropped if Redis fails. */
  async flush (): Promise<void> {
    const pairs: Array<string | number> = []
    for (const [key, n] of this.#counts) pairs.push(key, n)
    this.#counts.clear()
    const setKey = this.#setKey
    const decayDue = await this.#tier.run((client) => client.set(this.#decayKey, '1', 'PX', this.#intervalMs, 'NX'))
    if (decayDue === 'OK') await this.#tier.run((client) => client.zunionstore(setKey, 1, setKey, 'WEIGHTS', 0.5 ** (this.#intervalMs / HALF_LIFE_MS)))
    const top = await this.#tier.run((client) => (client as unknown as HotKeyCommands).chassisCacheHotRecord(setKey, this.max, IDLE_EXPIRY_MS, ...pairs))
    this.#rank = new Map(top.map((key, i) => [key, i]))
  }

  // Dropping the colder half when full costs one sort per max/2 new keys (amortized O(log max) a key), where a
  // heap-backed Space-Saving would cost O(log max) on every read; the fleet-wide set in Redis is the exact one.
  #trim (): void {
    const sorted = [...this.#counts].sort((a, b) => b[1] - a[1])
    for (const [key] of sorted.slice(Math.floor(this.max / 2))) this.#counts.delete(key)
  }
}
