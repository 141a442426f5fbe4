import { migrate } from '../services/domain/migrate.js'
import { loadScriptsConfig } from './lib/config.js'
import { openDatabase } from './lib/database.js'

const config = loadScriptsConfig()
const log = (message: string): void => console.log(`[migrate] ${message}`)
const db = await openDatabase({ databaseUrl: config.DATABASE_URL, port: config.EMBEDDED_PG_PORT, dataDir: config.EMBEDDED_PG_DATA_DIR, log })
try {
  const applied = await migrate({ databaseUrl: db.url, schema: config.DB_SCHEMA })
  log(applied.length > 0 ? `applied ${applied.join(', ')}` : 'schema is up to date')
} finally {
  await db.stop()
}
