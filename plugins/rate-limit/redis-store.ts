import { randomBytes } from 'node:crypto'
import type { RedisClient } from '../redis/index.js'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'

// An exact sliding-window log: one sorted set per key, one member per unit of cost, scored by Redis TIME.
// All of a request's policies are decided in this one script: a request is admitted only if every policy has room
// for its cost, and only then is it recorded in each. Memory: one member (about 40 bytes) per admitted unit in the
// trailing window, so at most `limit` members per key; keys expire with their window.
// ARGV: cost, consume (1/0), request id, then window and limit for each key.
const SLIDING_WINDOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local consume = ARGV[2] == '1'
local id = ARGV[3]
local out = { now }
local allowed = true
local counts = {}
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  counts[i] = count
  local ok = count + cost <= limit
  local retry = 0
  if not ok then
    allowed = false
    if cost > limit then
      retry = window
    else
      local entry = redis.call('ZRANGE', KEYS[i], count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
      retry = tonumber(entry[2]) + window - now
    end
  end
  local reset = 0
  if count > 0 then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    reset = tonumber(oldest[2]) + window - now
  end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = count
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if allowed and consume then
  for i = 1, #KEYS do
    local window = tonumber(ARGV[2 + 2 * i])
    for c = 1, cost do
      redis.call('ZADD', KEYS[i], now, id .. ':' .. c)
    end
    redis.call('PEXPIRE', KEYS[i], window)
    out[3 + (i - 1) * 4] = counts[i] + cost
    if counts[i] == 0 then out[4 + (i - 1) * 4] = window end
  end
end
return out`

interface Scripted {
  chassisRateLimit: (numKeys: number, ...args: Array<string | number>) => Promise<number[]>
}

/** The Redis store: one script call, one round trip, per request, for all of its policies. */
export class RedisStore implements RateLimitStore {
  readonly #client: RedisClient

  constructor (client: RedisClient) {
    this.#client = client
    client.defineCommand('chassisRateLimit', { lua: SLIDING_WINDOW_LUA })
  }

  async check ({ keys, policies, cost, consume }: StoreCheck): Promise<PolicyResult[]> {
    const args: Array<string | number> = [...keys, cost, consume ? 1 : 0, randomBytes(8).toString('base64url')]
    for (const p of policies) args.push(p.windowMs, p.limit)
    const reply = await (this.#client as unknown as Scripted).chassisRateLimit(keys.length, ...args)
    return policies.map((policy, i) => {
      const base = 1 + i * 4
      const count = Number(reply[base + 1])
      return {
        policy,
        allowed: reply[base] === 1,
        remaining: Math.max(0, policy.limit - count),
        resetMs: Number(reply[base + 2]),
        retryAfterMs: Number(reply[base + 3])
      }
    })
  }
}
