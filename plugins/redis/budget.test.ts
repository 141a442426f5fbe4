import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { CircuitBreaker, createRedisClient, withBudget, budgetHardCapMs, type RedisClient } from './index.js'
import { blockEventLoop } from '../../test/helpers/event-loop.js'
import { oldGenerationGrowthKb } from '../../test/helpers/old-generation.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const clients: RedisClient[] = []
after(() => { for (const c of clients) c.disconnect() })

async function connected (url: string, budgetMs: number): Promise<RedisClient> {
  const client = createRedisClient({ url, commandTimeoutMs: budgetMs })
  client.on('error', () => {})
  clients.push(client)
  await new Promise((resolve) => client.once('ready', resolve))
  return client
}

test('a reply waiting in the socket after the event loop was blocked past the budget is not counted as a timeout', async () => {
  const client = await connected(REDIS_URL, 50)
  const breaker = new CircuitBreaker(1, 60000)
  const calls = Array.from({ length: 20 }, (_, i) => withBudget(breaker, 50, () => client.echo(`reply-${i}`)))
  // The replies arrive while the loop spins; the budget timers are due long before it can read them.
  blockEventLoop(300)
  assert.deepEqual(await Promise.all(calls), Array.from({ length: 20 }, (_, i) => `reply-${i}`))
  assert.equal(breaker.state, 'closed')
})

test('a client from createRedisClient does not fail a reply waiting in the socket after a blocked event loop', async () => {
  const client = await connected(REDIS_URL, 50)
  const reply = client.echo('waiting')
  blockEventLoop(300)
  assert.equal(await reply, 'waiting')
})

test('a Redis that does not answer still fails: after the budget, and within its hard cap while the process runs late', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const client = await connected(redis.url, 50)
  redis.pause()
  t.after(() => redis.resume())
  const breaker = new CircuitBreaker(1000, 60000)
  let started = performance.now()
  await assert.rejects(withBudget(breaker, 50, () => client.ping()), { code: 'REDIS_TIMEOUT' })
  const first = performance.now() - started
  assert.ok(first >= 49 && first < budgetHardCapMs(50), `failed after ${first.toFixed(0)} ms`)

  // A loop kept busy in slices of 30 ms by other work: the verdict waits for it, never past the hard cap by more
  // than one slice and one more look.
  started = performance.now()
  const late = withBudget(breaker, 50, () => client.ping())
  const busy = setInterval(() => blockEventLoop(30), 1)
  t.after(() => clearInterval(busy))
  await assert.rejects(late, { code: 'REDIS_TIMEOUT' })
  clearInterval(busy)
  const waited = performance.now() - started
  assert.ok(waited < budgetHardCapMs(50) + 200, `busy process: failed after ${waited.toFixed(0)} ms`)
})

test('a hung Redis still fails every call within its own budget with the shared deadline sweep, whatever settled before it', async (t) => {
  const redis = await startPrivateRedis()
  t.after(() => redis.destroy())
  const live = await connected(REDIS_URL, 50)
  const hung = await connected(redis.url, 50)
  redis.pause()
  t.after(() => redis.resume())
  const breaker = new CircuitBreaker(1000, 60000)
  const timed = (budgetMs: number, call: () => Promise<unknown>): Promise<{ ok: boolean, afterMs: number }> => {
    const started = performance.now()
    return withBudget(breaker, budgetMs, call).then(() => ({ ok: true, afterMs: performance.now() - started }), (error: { code?: string }) => {
      assert.equal(error.code, 'REDIS_TIMEOUT')
      return { ok: false, afterMs: performance.now() - started }
    })
  }
  // The sweep's timer is armed for the oldest call, which is answered at once: it must re-arm for the hung calls
  // behind it, each failing after its own budget (two budgets side by side, calls added while the timer is armed).
  const answered = timed(50, () => live.ping())
  const first = timed(50, () => hung.ping())
  await new Promise((resolve) => setTimeout(resolve, 20))
  const later = timed(50, () => hung.ping())
  const longer = timed(200, () => hung.ping())
  const outcome = await Promise.race([
    Promise.all([answered, first, later, longer]),
    new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('a hung call was never failed')), 5000).unref())
  ])
  const [ok, a, b, c] = outcome
  assert.equal(ok.ok, true)
  for (const [r, budget] of [[a, 50], [b, 50], [c, 200]] as const) {
    assert.equal(r.ok, false)
    assert.ok(r.afterMs >= budget - 1 && r.afterMs < budgetHardCapMs(budget), `a ${budget} ms budget failed after ${r.afterMs.toFixed(0)} ms`)
  }
})

test('the budget keeps no settled call\'s reply alive: young-generation collections do not promote the replies to the old generation', async () => {
  const breaker = new CircuitBreaker(1000, 60000)
  // 64 calls in flight under one budget, each answered a turn later with a reply of 64 KB.
  const round = (): Promise<unknown> => Promise.all(Array.from({ length: 64 }, async () => {
    const reply = await withBudget(breaker, 60_000, async () => { await nextTurn(); return new Array(8000).fill(1.5) as number[] })
    return reply.length
  }))
  // 1,280 replies of 64 KB, 80 MB: the same rounds without the budget grow it by about 1 MB under the test runner,
  // and with a Set of the calls in flight it kept and promoted a third of the replies or more.
  const grewKb = await oldGenerationGrowthKb(round)
  assert.ok(grewKb < 8 * 1024, `the old generation grew by ${grewKb.toFixed(0)} KB over 1,280 settled calls`)
})

test('a call that answers with a value instead of a promise (a caller in plain JavaScript) resolves with it and counts no failure against the breaker a budget later', async () => {
  const breaker = new CircuitBreaker(1, 60000)
  const plain = (() => 'answered') as unknown as () => Promise<string>
  assert.equal(await withBudget(breaker, 20, plain), 'answered')
  await new Promise((resolve) => setTimeout(resolve, 80))
  assert.equal(breaker.state, 'closed')
  assert.equal(await withBudget(breaker, 20, async () => 'next'), 'next')
})
