import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ReplicaSet, type ReplicaPool } from './replicas.js'

const down: ReplicaPool = { query: async () => { throw new Error('connect ECONNREFUSED') }, close: async () => {} }

test('a replica already down when the instance starts is logged unhealthy once, as one that fails later is, not left to db_replica_up alone', async () => {
  const warnings: string[] = []
  const logger = { info: () => {}, warn: (_fields: object, message: string) => { warnings.push(message) }, error: () => {} }
  const set = new ReplicaSet([{ name: 'replica-1', address: '127.0.0.1:5499/leads', pool: down }], {
    waitMillis: 0, healthCheckInterval: 0, pollMillis: 10, primaryPosition: async () => 0n, logger
  })
  await set.start()
  await set.checkHealth()
  await set.checkHealth()
  assert.deepEqual(warnings, ['replica unhealthy: its reads go elsewhere'])
})
