import { defineScript, isCluster, type RedisClient } from '../redis/index.js'
import type { PolicyResult, RateLimitStore, StoreCheck } from './store.js'

/**
 * Entries a log may hold past the window before they are trimmed. Decisions never use them (a request that might
 * not fit is decided on a trimmed, exact count), so they only make `remaining` understate, by at most SLACK - 1
 * and only while at least SLACK are left; trimming in batches of SLACK keeps that off most requests.
 */
export const LOG_SLACK = 16

/** Decisions sent in one script call at most. */
export const MAX_BATCH = 64

// An exact sliding-window log: one Redis list per key holding the Redis TIME (in microseconds) of every admitted
// unit of cost, oldest first. A request pushes its units and reads the list's length: if that is at most the
// limit minus LOG_SLACK it fits whatever has expired; otherwise the expired head is trimmed and the exact count
// decides, and a refused request takes its units back. On refusal the entry whose expiry admits the request gives
// the exact Retry-After. All of a request's policies are decided together: a request is admitted only if every
// policy has room for its cost, and only then is it recorded in each. Memory: a list of integers, about 10 bytes
// per admitted unit in the trailing window (at most limit + LOG_SLACK - 1 entries).
//
// A key outlives its newest entry's window. Its expiry is looked at (PTTL) on a push that leaves at most SLACK
// entries, on one that trims, and on every request off the fast path, and then pushed to three windows ahead when
// less than two are left: at least two windows from that look. A fast-path push that neither trims nor leaves at
// most SLACK entries skips the look, since the entry at SLACK - 1 is then unexpired (the trim read it) and its push
// was looked at (it left at most SLACK entries) or came before a trim that was: the last look is less than one window
// old, so the expiry is more than a window ahead. That saves a command on most requests of a busy key.
//
// One call decides a batch of requests in order, atomically, at one Redis TIME, so the clock read, the script
// call and the round trip are shared by every request that arrived in the same turn of the event loop.
// Consecutive requests with the same policies, cost and consume flag form a group whose arguments are sent and
// parsed once: a batch of requests under the global policy sends one key per request and nothing else.
// ARGV: number of groups, then per group: number of requests, number of keys per request, cost, consume (1/0),
// window (ms) and limit per key. KEYS: every request's keys in order. Reply: per key, in order: count after the
// request and ms until the request would be admitted (0 when it was).
const BATCH_LUA = `
local SLACK = ${LOG_SLACK}
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local out, o = {}, 0

local function trim (key, count, floor)
  while count > 0 do
    local head = redis.call('LRANGE', key, 0, SLACK - 1)
    local k = 0
    for i = 1, #head do if tonumber(head[i]) <= floor then k = i else break end end
    if k > 0 then redis.call('LTRIM', key, k, -1) count = count - k end
    if k < SLACK then return count end
  end
  return count
end

-- Drops expired entries SLACK at a time while a whole batch of them has expired: fewer than SLACK are left over.
local function trimSlack (key, count, floor)
  local trimmed = false
  while count > SLACK and tonumber(redis.call('LINDEX', key, SLACK - 1)) <= floor do
    redis.call('LTRIM', key, SLACK, -1)
    count = count - SLACK
    trimmed = true
  end
  return count, trimmed
end

local function keepAlive (key, window)
  if redis.call('PTTL', key) < 2 * window then redis.call('PEXPIRE', key, 3 * window) end
end

local function push (key, cost)
  if cost == 1 then return redis.call('RPUSH', key, now) end
  local chunk = {}
  for c = 1, math.min(cost, 512) do chunk[c] = now end
  local count
  local left = cost
  while left > 0 do
    local k = math.min(left, 512)
    count = redis.call('RPUSH', key, unpack(chunk, 1, k))
    left = left - k
  end
  return count
end

-- pol: window (ms) and limit of each of the request's n keys, in turn.
local function decide (kb, pol, n, cost, consume)
  if n == 1 and cost == 1 and consume then
    -- One policy, one unit, room to spare: the push and the slack check, and the expiry look only when due.
    local key = KEYS[kb + 1]
    local window = pol[1]
    local floor = now - window * 1000
    local count = redis.call('RPUSH', key, now)
    if count <= pol[2] - SLACK then
      local trimmed
      count, trimmed = trimSlack(key, count, floor)
      if trimmed or count <= SLACK then keepAlive(key, window) end
      out[o + 1] = count
      out[o + 2] = 0
      o = o + 2
      return
    end
    redis.call('RPOP', key)
  end
  local counts, pushed, refusing = {}, {}, false
  for i = 1, n do
    local key = KEYS[kb + i]
    local limit = pol[2 * i]
    local floor = now - pol[2 * i - 1] * 1000
    local count
    if consume and cost <= limit then
      count = push(key, cost)
      pushed[i] = true
      if count > limit - SLACK then
        count = trim(key, count, floor)
        if count > limit then refusing = true end
      else
        count = trimSlack(key, count, floor)
      end
    else
      count = trim(key, redis.call('LLEN', key), floor)
      if consume then refusing = true end
    end
    counts[i] = count
  end
  for i = 1, n do
    local key = KEYS[kb + i]
    local window = pol[2 * i - 1]
    local limit = pol[2 * i]
    local count = counts[i]
    local retry = 0
    if refusing then
      if pushed[i] then
        redis.call('LTRIM', key, 0, -(cost + 1))
        count = count - cost
      end
      if count + cost > limit then
        if cost > limit then
          retry = window
        else
          local oldest = redis.call('LINDEX', key, count + cost - limit - 1)
          retry = math.ceil((tonumber(oldest) + window * 1000 - now) / 1000)
        end
      end
    end
    -- Every trim of a key that keeps entries, recorded or not, is a look at its expiry for the fast path's skip.
    if count > 0 then keepAlive(key, window) end
    out[o + 1] = count
    out[o + 2] = retry
    o = o + 2
  end
end

local kb, ab = 0, 2
for g = 1, tonumber(ARGV[1]) do
  local requests, n, cost, consume = tonumber(ARGV[ab]), tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2]), ARGV[ab + 3] == '1'
  local pol = {}
  for i = 1, 2 * n do pol[i] = tonumber(ARGV[ab + 3 + i]) end
  for r = 1, requests do
    decide(kb, pol, n, cost, consume)
    kb = kb + n
  end
  ab = ab + 4 + 2 * n
end
return out`

interface Scripted {
  chassisRateLimitBatch: (numKeys: number, keys: string[], args: Array<string | number>) => Promise<number[]>
}

/** Whether two decisions can share one group of script arguments: the same policies, cost and consume flag. */
function samePolicies (a: StoreCheck, b: StoreCheck): boolean {
  if (a.policies === b.policies) return a.cost === b.cost && a.consume === b.consume
  if (a.policies.length !== b.policies.length || a.cost !== b.cost || a.consume !== b.consume) return false
  for (let i = 0; i < a.policies.length; i++) {
    const p = a.policies[i] as StoreCheck['policies'][number]
    const q = b.policies[i] as StoreCheck['policies'][number]
    if (p !== q && (p.windowMs !== q.windowMs || p.limit !== q.limit)) return false
  }
  return true
}

/** How a decision is handed back: the error that kept the store from deciding, or the results. */
export type Decided = (error: unknown, results: PolicyResult[] | undefined) => void

/**
 * Calls one decision's callback. One that throws must not keep the batch's later requests from their answers (they
 * would wait forever) nor become a rejection of the batch's promise: the error is thrown again on its own, as an
 * uncaught exception of that callback, once the batch has been answered.
 */
function call (answer: Decided, error: unknown, results: PolicyResult[] | undefined): void {
  try {
    answer(error, results)
  } catch (thrown) {
    setImmediate(() => { throw thrown })
  }
}

/** Runs one store call under a time budget and a breaker (`withBudget`), or as is. */
export type StoreBudget = <T>(call: () => Promise<T>) => Promise<T>

interface Batch {
  checks: StoreCheck[]
  answers: Decided[]
  /** Written to Redis: a decision asked for after that starts a batch of its own. */
  sent: boolean
}

/**
 * The Redis store. Decisions asked for in the same turn of the event loop go to Redis together, in one script
 * call (one round trip, one clock read) that decides them in order; each request still makes exactly one trip.
 * A Redis Cluster client sends each decision alone, since one script may only touch one slot.
 *
 * `budget` wraps each script call, not each decision: the time budget and the breaker are paid once per batch
 * instead of once per request, and the breaker counts script calls. The budget starts when the batch is written,
 * not with its first decision: the time between is the rest of the turn that parsed the requests, the process's own
 * busy time. On a freshly started instance parsing a burst that was most of a 100 ms budget, and a batch Redis
 * answered 40 ms after it was written was decided by the fallback, with Redis up.
 */
export class RedisStore implements RateLimitStore {
  readonly #client: RedisClient
  readonly #batching: boolean
  readonly #budget: StoreBudget
  #filling: Batch | undefined
  #waiting: Batch[] = []
  #scheduled = false

  constructor (client: RedisClient, options: { batch?: boolean, budget?: StoreBudget } = {}) {
    this.#client = client
    this.#batching = (options.batch ?? true) && !isCluster(client)
    this.#budget = options.budget ?? ((call) => call())
    defineScript(client, 'chassisRateLimitBatch', { lua: BATCH_LUA })
  }

  check (check: StoreCheck): Promise<PolicyResult[]> {
    return new Promise((resolve, reject) => {
      this.decide(check, (error, results) => { if (results === undefined) reject(error); else resolve(results) })
    })
  }

  /** `check` without a promise of its own: `answer` is called once, with the results or the error. */
  decide (check: StoreCheck, answer: Decided): void {
    let batch = this.#filling
    if (batch === undefined || batch.sent || batch.checks.length === MAX_BATCH) batch = this.#open()
    batch.checks.push(check)
    batch.answers.push(answer)
    if (!this.#batching) {
      this.#filling = undefined
      this.#write(batch)
    }
  }

  #open (): Batch {
    const batch: Batch = { checks: [], answers: [], sent: false }
    this.#filling = batch
    if (this.#batching) {
      this.#waiting.push(batch)
      if (!this.#scheduled) {
        this.#scheduled = true
        // After the poll phase: every request parsed in this turn of the loop is in a batch by then.
        setImmediate(this.#flush)
      }
    }
    return batch
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    this.#filling = undefined
    const waiting = this.#waiting
    this.#waiting = []
    for (const batch of waiting) this.#write(batch)
  }

  /** Sends one batch under the budget (an open breaker refuses it at once) and answers its decisions. */
  #write (batch: Batch): void {
    batch.sent = true
    const checks = batch.checks
    let sent: Promise<number[]>
    // A call that throws before it is sent fails this batch alone: thrown out of the flush, it would leave the
    // turn's later batches unwritten and their requests unanswered.
    try {
      sent = this.#budget(() => this.#send(checks))
    } catch (error) {
      sent = Promise.reject(error)
    }
    sent.then((reply) => { this.#answer(batch, reply) }, (error: unknown) => { this.#fail(batch, error) })
  }

  #fail (batch: Batch, error: unknown): void {
    if (this.#filling === batch) this.#filling = undefined
    const { answers } = this.#close(batch)
    const failure = error ?? new Error('rate-limit store call failed')
    for (const answer of answers) call(answer, failure, undefined)
    answers.length = 0
  }

  /**
   * Detaches a settled batch from its decisions. A batch that lived through two young-generation collections is in
   * the old generation, and while it still pointed at its requests' callbacks, every request it had answered (and
   * what they point at) was kept through the next collections and moved there too, until a full collection: seven
   * times the bytes promoted per request, and five full collections instead of one over 60,000 requests. The
   * arrays are emptied once answered for the same reason.
   */
  #close (batch: Batch): { checks: StoreCheck[], answers: Decided[] } {
    const { checks, answers } = batch
    batch.checks = []
    batch.answers = []
    return { checks, answers }
  }

  #answer (batch: Batch, reply: number[]): void {
    // The quota is fully back one window after the newest request, which is the reset the headers report.
    let at = 0
    const { checks, answers } = this.#close(batch)
    for (let i = 0; i < checks.length; i++) {
      const policies = (checks[i] as StoreCheck).policies
      const results: PolicyResult[] = []
      for (const policy of policies) {
        const count = Number(reply[at])
        const retryAfterMs = Number(reply[at + 1])
        at += 2
        results.push({
          policy,
          allowed: retryAfterMs === 0 && count <= policy.limit,
          remaining: Math.max(0, policy.limit - count),
          resetMs: count === 0 ? 0 : policy.windowMs,
          retryAfterMs
        })
      }
      call(answers[i] as Decided, undefined, results)
    }
    checks.length = 0
    answers.length = 0
  }

  #send (checks: StoreCheck[]): Promise<number[]> {
    // ioredis flattens the key and argument arrays into the command: no spread of a long argument list.
    const keys: string[] = []
    const args: Array<string | number> = [0]
    let groups = 0
    let countAt = 0
    let previous: StoreCheck | undefined
    for (const check of checks) {
      const { keys: k, policies, cost, consume } = check
      for (let i = 0; i < policies.length; i++) keys.push(k[i] as string)
      if (previous !== undefined && samePolicies(previous, check)) {
        (args[countAt] as number)++
        continue
      }
      previous = check
      groups++
      countAt = args.length
      args.push(1, policies.length, cost, consume ? 1 : 0)
      for (const p of policies) args.push(p.windowMs, p.limit)
    }
    args[0] = groups
    return (this.#client as unknown as Scripted).chassisRateLimitBatch(keys.length, keys, args)
  }
}
