import { defineScript, type RedisClient } from '../redis/index.js'

// Each instance scores itself in one sorted set with the Redis TIME of its last heartbeat (instance clocks do not
// matter), drops the members that missed `ttl` ms of heartbeats, and reads how many are left.
const PRESENCE_LUA = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])`

interface PresenceCommands {
  chassisRateLimitPresence: (key: string, id: string, ttlMs: number) => Promise<number>
}

/**
 * Open presences per client and member (key and id): limiters on one client share one member (one instance, however
 * many limiters or apps it runs on the client), so the member leaves the set with the last of them. Removed with the
 * first, it left the others uncounted until their next heartbeat, and the rest of the fleet, counting one instance
 * fewer, would each admit a larger share if Redis failed then.
 */
const openMembers = new WeakMap<RedisClient, Map<string, number>>()

function membersOf (client: RedisClient): Map<string, number> {
  let members = openMembers.get(client)
  if (members === undefined) openMembers.set(client, members = new Map())
  return members
}

/** Heartbeats an instance is counted for after its last one. */
const PRESENCE_MISSED_BEATS = 3

/**
 * The instances of one limiter that share a Redis, counted while Redis is up, so that during an outage each one can
 * admit only its share of a limit. The count is the last one read: it stays as it was while Redis is unreachable,
 * and an instance that has never reached Redis counts only itself.
 */
export class Presence {
  readonly #client: RedisClient
  readonly #key: string
  readonly #id: string
  readonly #intervalMs: number
  readonly #run: <T>(call: () => Promise<T>) => Promise<T>
  readonly #timer: NodeJS.Timeout
  readonly #onReady = (): void => { void this.beat() }
  #live = 1
  #closed = false

  /** `run` sends a command under the caller's breaker and budget. */
  constructor (client: RedisClient, key: string, id: string, intervalMs: number, run: <T>(call: () => Promise<T>) => Promise<T>) {
    this.#client = client
    this.#key = key
    this.#id = id
    this.#intervalMs = intervalMs
    this.#run = run
    const members = membersOf(client)
    members.set(this.#member, (members.get(this.#member) ?? 0) + 1)
    defineScript(client, 'chassisRateLimitPresence', { numberOfKeys: 1, lua: PRESENCE_LUA })
    this.#timer = setInterval(() => { void this.beat() }, intervalMs).unref()
    // Announced on every (re)connection, so the count is current as soon as Redis can be reached.
    client.on('ready', this.#onReady)
    if (client.status === 'ready') void this.beat()
  }

  get #member (): string {
    return `${this.#key}\n${this.#id}`
  }

  /** Live instances, this one included, as last read. */
  get live (): number {
    return this.#live
  }

  /** Announces this instance and reads the count; a failure keeps the last count. */
  async beat (): Promise<void> {
    try {
      const live = await this.#run(() => (this.#client as unknown as PresenceCommands).chassisRateLimitPresence(this.#key, this.#id, this.#intervalMs * PRESENCE_MISSED_BEATS))
      this.#live = Math.max(1, Number(live))
    } catch {
      // Redis unreachable: the last count stands, and the limiter's breaker has learnt of it.
    }
  }

  /**
   * Stops the heartbeat and, with the last presence of its member on this client, leaves the set, so the others'
   * share grows at once. The client may outlive its limiters (an app closed over a client it was given): nothing of
   * this one stays on it to announce it again.
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#timer)
    this.#client.off('ready', this.#onReady)
    const members = membersOf(this.#client)
    const open = (members.get(this.#member) ?? 1) - 1
    if (open > 0) {
      members.set(this.#member, open)
      return
    }
    members.delete(this.#member)
    await this.#run(() => this.#client.zrem(this.#key, this.#id)).catch(() => {})
  }
}
