import { createConnectionPool, type ConnectionPool } from '@lead-chassis/plugins/db-pool'
import { migrate } from '../../services/domain/migrate.js'
import { seed } from '../../services/domain/seed.js'

/** A benchmark's own schema, migrated and holding at least `leads` leads (seeded and analyzed once); a small pool on it. */
export async function seededSchema (databaseUrl: string, schema: string, leads: number, log: (line: string) => void): Promise<ConnectionPool> {
  await migrate({ databaseUrl, schema })
  const pool = createConnectionPool({ connectionString: databaseUrl, schema, min: 0, max: 2, healthCheckInterval: 0 })
  const { rows: [count] } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM leads')
  const missing = leads - (count?.n ?? 0)
  if (missing > 0) {
    log(`seeding ${missing} leads into ${schema}`)
    await seed({ databaseUrl, schema, count: missing })
    await pool.query('ANALYZE leads')
  }
  return pool
}
