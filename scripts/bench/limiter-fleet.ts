import { parseArgs } from 'node:util'
import { randomUUID } from 'node:crypto'
import { fleetRun, startBusyLoops } from '../../test/helpers/rate-limit-fleet.js'
import { startPrivateRedis } from '../../test/helpers/private-redis.js'

// Three freshly started instances over one private Redis, two CPU-bound processes beside them, one burst of
// concurrent requests as one client per run: prints how many were admitted, with Redis up and with Redis stopped.
const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    'outage-runs': { type: 'string', default: '5' },
    instances: { type: 'string', default: '3' },
    limit: { type: 'string', default: '100' },
    requests: { type: 'string', default: '1000' },
    busy: { type: 'string', default: '2' }
  }
})
/** The cause of each fallback episode the instances logged, when there was one. */
function causes (logs: Array<Array<Record<string, unknown>>>): string {
  const all = logs.flat().filter((l) => String(l.msg).includes('falling back')).map((l) => JSON.stringify(l.cause))
  return all.length > 0 ? `; fallback causes: ${all.join(' ')}` : ''
}
const common = { instances: Number(args.instances), limit: Number(args.limit), requests: Number(args.requests) }
const busy = startBusyLoops(Number(args.busy))
const redis = await startPrivateRedis()
try {
  console.log(`${common.instances} instances, limit ${common.limit}, ${common.requests} concurrent requests, ${args.busy} busy processes`)
  const up: number[] = []
  for (let i = 1; i <= Number(args.runs); i++) {
    const r = await fleetRun({ ...common, redisUrl: redis.url, prefix: `fleet-${randomUUID()}:` })
    up.push(r.admitted)
    console.log(`redis up      run ${i}: admitted ${r.admitted}, refused ${r.refused}, failed ${r.failed}, fallback decisions per instance ${r.fallbacks.join('/')}${causes(r.logs)}`)
  }
  const down: number[] = []
  for (let i = 1; i <= Number(args['outage-runs']); i++) {
    const r = await fleetRun({ ...common, redisUrl: redis.url, prefix: `fleet-${randomUUID()}:`, outage: () => redis.stop() })
    down.push(r.admitted)
    console.log(`redis stopped run ${i}: admitted ${r.admitted}, refused ${r.refused}, failed ${r.failed}, fallback decisions per instance ${r.fallbacks.join('/')}${causes(r.logs)}`)
    await redis.start()
  }
  console.log(`admitted with Redis up: ${up.join(', ')}`)
  console.log(`admitted with Redis stopped: ${down.join(', ')}`)
} finally {
  await redis.destroy()
  await busy.stop()
}
