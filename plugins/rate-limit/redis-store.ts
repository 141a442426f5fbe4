import { randomBytes } from 'node:crypto'

// Members must be unique per request: a random prefix per process and a counter are, without a syscall per request.
const PROCESS_ID = randomBytes(6).toString('base64url')
let sequence = 0
import type { RedisClient } from '../redis/index.js'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'

// An exact sliding-window log: one sorted set per key, one member per unit of cost, scored by Redis TIME.
// All of a request's policies are decided in this one script: a request is admitted only if every policy has room
// for its cost, and only then is it recorded in each. Memory: one member (about 40 bytes) per admitted unit in the
// trailing window, so at most `limit` members per key. A key outlives its newest member's window: its expiry is
// pushed to two windows ahead whenever less than one is left, which reads the TTL on most requests instead of
// writing it (a PEXPIRE is a write Redis must also propagate).
// ARGV: cost, consume (1/0), request id, then window and limit for each key.
const SLIDING_WINDOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local n = #KEYS
local counts = {}
local out = { now }
local allowed = true
for i = 1, n do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  counts[i] = count
  local retry = 0
  if count + cost > limit then
    allowed = false
    if cost > limit then
      retry = window
    else
      local entry = redis.call('ZRANGE', KEYS[i], count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
      retry = tonumber(entry[2]) + window - now
    end
  end
  out[2 + (i - 1) * 3] = count
  out[3 + (i - 1) * 3] = retry
  out[4 + (i - 1) * 3] = 0
end
if allowed and ARGV[2] == '1' then
  for i = 1, n do
    local window = tonumber(ARGV[2 + 2 * i])
    if cost == 1 then
      redis.call('ZADD', KEYS[i], now, ARGV[3])
    else
      for c = 1, cost do redis.call('ZADD', KEYS[i], now, ARGV[3] .. ':' .. c) end
    end
    if redis.call('PTTL', KEYS[i]) < window then redis.call('PEXPIRE', KEYS[i], window * 2) end
    out[2 + (i - 1) * 3] = counts[i] + cost
    out[4 + (i - 1) * 3] = 1
  end
end
return out`

// The same decision for the common case of one policy, with less Lua work per request (same ARGV layout).
const SINGLE_LUA = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cost = tonumber(ARGV[1])
local window = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count + cost > limit then
  if cost > limit then return { now, count, window, 0 } end
  local e = redis.call('ZRANGE', KEYS[1], count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
  return { now, count, e[2] + window - now, 0 }
end
if ARGV[2] == '1' then
  if cost == 1 then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
  else
    for c = 1, cost do redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. c) end
  end
  if redis.call('PTTL', KEYS[1]) < window then redis.call('PEXPIRE', KEYS[1], window * 2) end
  return { now, count + cost, 0, 1 }
end
return { now, count, 0, 0 }`

interface Scripted {
  chassisRateLimit: (numKeys: number, ...args: Array<string | number>) => Promise<number[]>
  chassisRateLimit1: (key: string, ...args: Array<string | number>) => Promise<number[]>
}

/** The Redis store: one script call, one round trip, per request, for all of its policies. */
export class RedisStore implements RateLimitStore {
  readonly #client: RedisClient

  constructor (client: RedisClient) {
    this.#client = client
    client.defineCommand('chassisRateLimit', { lua: SLIDING_WINDOW_LUA })
    client.defineCommand('chassisRateLimit1', { numberOfKeys: 1, lua: SINGLE_LUA })
  }

  async check ({ keys, policies, cost, consume }: StoreCheck): Promise<PolicyResult[]> {
    const id = `${PROCESS_ID}${(sequence++).toString(36)}`
    const scripts = this.#client as unknown as Scripted
    const only = policies.length === 1 ? policies[0] : undefined
    let reply: number[]
    if (only) {
      reply = await scripts.chassisRateLimit1(keys[0] as string, cost, consume ? 1 : 0, id, only.windowMs, only.limit)
    } else {
      const args: Array<string | number> = [...keys, cost, consume ? 1 : 0, id]
      for (const p of policies) args.push(p.windowMs, p.limit)
      reply = await scripts.chassisRateLimit(keys.length, ...args)
    }
    // Reply: Redis time, then per key: count after the request, ms until it would be admitted, and 1 if recorded.
    // The quota is fully back one window after the newest request, which is the reset the headers report.
    return policies.map((policy, i) => {
      const base = 1 + i * 3
      const count = Number(reply[base])
      const retryAfterMs = Number(reply[base + 1])
      return {
        policy,
        allowed: retryAfterMs === 0 && count <= policy.limit,
        remaining: Math.max(0, policy.limit - count),
        resetMs: count === 0 ? 0 : policy.windowMs,
        retryAfterMs
      }
    })
  }
}
