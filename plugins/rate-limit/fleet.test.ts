import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { fleetRun, startBusyLoops } from '../../test/helpers/rate-limit-fleet.js'
import { startPrivateRedis, type PrivateRedis } from '../../test/helpers/private-redis.js'

// Three instances, each a process of its own started fresh for every run (cold code, connections just made), two
// CPU-bound processes beside them on this 2-core machine, 1,000 concurrent requests as one client, limit 100.
// `npm run limiter:fleet` runs the same for as many runs as asked and prints the counts.
const RUNS_UP = 4
const RUNS_DOWN = 1
let busy: { stop: () => Promise<void> }
let redis: PrivateRedis

before(async () => {
  busy = startBusyLoops(2)
  redis = await startPrivateRedis()
})

after(async () => {
  await redis?.destroy()
  await busy?.stop()
})

test('three freshly started instances on a busy machine admit exactly the limit of a concurrent burst, run after run', async () => {
  const admitted: number[] = []
  for (let run = 0; run < RUNS_UP; run++) {
    const r = await fleetRun({ redisUrl: redis.url, prefix: `fleet-${randomUUID()}:` })
    assert.equal(r.failed, 0)
    admitted.push(r.admitted)
    assert.deepEqual(r.fallbacks, [0, 0, 0], `run ${run + 1}: no decision left to the in-process fallback while Redis is up`)
  }
  assert.deepEqual(admitted, Array(RUNS_UP).fill(100))
})

test('with Redis stopped, three instances admit at most the limit together, and each logs its fallback once with its cause', async () => {
  for (let run = 0; run < RUNS_DOWN; run++) {
    const r = await fleetRun({ redisUrl: redis.url, prefix: `fleet-${randomUUID()}:`, outage: () => redis.stop() })
    await redis.start()
    assert.equal(r.failed, 0)
    assert.ok(r.admitted <= 100, `run ${run + 1}: ${r.admitted} admitted`)
    assert.equal(r.admitted, 99, 'each instance admits its share, floor(100 / 3)')
    for (const logs of r.logs) {
      const fallbacks = logs.filter((l) => String(l.msg).includes('falling back'))
      assert.equal(fallbacks.length, 1, JSON.stringify(fallbacks))
      assert.ok((fallbacks[0]?.cause as { message?: string } | undefined)?.message, 'the cause is in the line')
    }
  }
})
