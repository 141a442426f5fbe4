import { parseArgs } from 'node:util'
import { migrate } from '../services/domain/migrate.js'
import { seed } from '../services/domain/seed.js'
import { loadScriptsConfig } from './lib/config.js'
import { openDatabase } from './lib/database.js'

const { values } = parseArgs({ options: { count: { type: 'string', default: '10000' }, seed: { type: 'string' } } })
const count = Number(values.count)
if (!Number.isInteger(count) || count < 0) {
  console.error('--count must be a non-negative integer')
  process.exit(2)
}
const config = loadScriptsConfig()
const log = (message: string): void => console.log(`[seed] ${message}`)
const db = await openDatabase({ databaseUrl: config.DATABASE_URL, port: config.EMBEDDED_PG_PORT, dataDir: config.EMBEDDED_PG_DATA_DIR, log })
try {
  await migrate({ databaseUrl: db.url, schema: config.DB_SCHEMA })
  let reported = 0
  const result = await seed({
    databaseUrl: db.url,
    schema: config.DB_SCHEMA,
    count,
    ...(values.seed ? { seed: Number(values.seed) } : {}),
    onProgress: (n) => {
      if (n - reported >= 100000) {
        reported = n
        log(`${n} leads`)
      }
    }
  })
  const perSecond = Math.round(result.leads / (result.ms / 1000))
  log(`inserted ${result.leads} leads and ${result.agents} agents in ${(result.ms / 1000).toFixed(1)} s (${perSecond} rows/s)`)
} finally {
  await db.stop()
}
