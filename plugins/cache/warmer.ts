import { randomUUID } from 'node:crypto'
import type { HotKeys } from './hot-keys.js'
import type { LoaderRegistry, RegisteredLoader } from './loaders.js'
import type { RedisTier } from './redis-tier.js'
import { defineScript } from '../redis/index.js'

// The fleet's epoch: created once, gone only when Redis lost its data (FLUSHALL, a restart without persistence).
const EPOCH_LUA = `
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`

interface EpochCommands {
  chassisCacheEpoch: (key: string, candidate: string) => Promise<string>
}

const RERUN_CONCURRENCY = 4
const RERUN_LOCK_MS = 60_000

export interface WarmerOptions {
  prefix: string
  enabled: boolean
  maxEntries: number
  timeoutMs: number
}

export interface WarmerHooks {
  /** Copies these keys from Redis into the local tier (fresh, coherent entries only); resolves with how many. */
  fill: (keys: string[]) => Promise<number>
  /** Loads `key` through the cache as a miss would, writing Redis and the local tier. */
  rerun: (key: string, registered: RegisteredLoader) => Promise<void>
  /** Redis lost its data: tag generations restarted, so nothing local can be trusted. */
  lost: () => void
}

/** Resolves with `run`'s result, or with `fallback` once `ms` have passed; `run` learns about it through `expired`. */
async function bounded<T> (ms: number, fallback: T, run: (expired: () => boolean) => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let over = false
  try {
    return await Promise.race([
      run(() => over),
      new Promise<T>((resolve) => { timer = setTimeout(() => { over = true; resolve(fallback) }, ms) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Warming on start (the fleet's hottest entries copied from Redis into the local tier, bounded by count and time)
 * and the re-run after Redis lost its data: the first instance to see a new epoch takes a lock named after it and
 * re-runs the loaders of the hottest keys it knows, so each runs once across the fleet.
 */
export class Warmer {
  readonly #tier: RedisTier
  readonly #hot: HotKeys
  readonly #loaders: LoaderRegistry
  readonly #hooks: WarmerHooks
  readonly #o: WarmerOptions
  #epoch: string | undefined
  #checking: Promise<void> | undefined
  rerunCount = 0

  constructor (tier: RedisTier, hot: HotKeys, loaders: LoaderRegistry, hooks: WarmerHooks, options: WarmerOptions) {
    this.#tier = tier
    this.#hot = hot
    this.#loaders = loaders
    this.#hooks = hooks
    this.#o = options
    defineScript(tier.client, 'chassisCacheEpoch', { numberOfKeys: 1, lua: EPOCH_LUA })
  }

  /** Fills the local tier with up to maxEntries of the hottest entries, within timeoutMs; resolves with how many. */
  async warm (): Promise<number> {
    if (!this.#o.enabled || this.#o.maxEntries === 0 || this.#o.timeoutMs === 0) return 0
    return bounded(this.#o.timeoutMs, 0, async (expired) => {
      let filled = 0
      try {
        await this.checkEpoch().catch(() => {})
        const keys = await this.#tier.run((client) => client.zrevrange(`${this.#o.prefix}__hot`, 0, this.#o.maxEntries - 1))
        for (let i = 0; i < keys.length && !expired(); i += 100) filled += await this.#hooks.fill(keys.slice(i, i + 100))
      } catch {
        // Warming is best effort: a Redis client still connecting (it refuses commands until then) or a Redis gone
        // leaves the local tier to fill from traffic, and never fails the boot.
      }
      return filled
    })
  }

  /**
   * Learns the fleet's epoch; when it changed, Redis lost its data and one instance re-runs the hot loaders. One
   * check at a time, a second caller joining it: a tick's check racing the link's would find the epoch already
   * learnt and flush hot-key counts while the re-run loads, and that flush learns the hot set of the Redis that lost
   * its data and forgets the loaders of the keys the re-run has not reached yet.
   */
  async checkEpoch (): Promise<void> {
    this.#checking ??= this.#check().finally(() => { this.#checking = undefined })
    return this.#checking
  }

  async #check (): Promise<void> {
    const candidate = randomUUID()
    const current = await this.#tier.run((client) => (client as unknown as EpochCommands).chassisCacheEpoch(`${this.#o.prefix}__epoch`, candidate))
    const previous = this.#epoch
    this.#epoch = current
    if (previous === undefined || previous === current) return
    this.#hooks.lost()
    const won = await this.#tier.run((client) => client.set(`${this.#o.prefix}__rerun:${current}`, '1', 'PX', RERUN_LOCK_MS, 'NX'))
    if (won === 'OK') await this.#rerun()
  }

  async #rerun (): Promise<void> {
    const rank = (key: string): number => Math.min(this.#hot.rank(key), Number.MAX_SAFE_INTEGER)
    const keys = this.#loaders.keys().filter((key) => this.#hot.isHot(key)).sort((a, b) => rank(a) - rank(b)).slice(0, this.#o.maxEntries)
    await bounded(this.#o.timeoutMs, undefined, async (expired) => {
      let next = 0
      await Promise.all(Array.from({ length: RERUN_CONCURRENCY }, async () => {
        while (next < keys.length && !expired()) {
          const key = keys[next++] as string
          const registered = this.#loaders.get(key)
          if (!registered) continue
          this.rerunCount++
          await this.#hooks.rerun(key, registered).catch(() => {})
        }
      }))
    })
  }
}
