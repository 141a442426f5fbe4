// Creates what the example reads: its products table, and the api_keys table with the trigger that announces
// revocations (shipped by the package, so a key revoked by hand in SQL is refused at once, not after a cache TTL).
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { createApiKeysSchema } from '@lead-chassis/plugins/api-keys'

const db = createConnectionPool({ connectionString: process.env.DATABASE_URL, min: 0, max: 1 })
try {
  await db.query(`CREATE TABLE IF NOT EXISTS products (
    id integer PRIMARY KEY,
    name text NOT NULL,
    price_cents integer NOT NULL
  )`)
  await createApiKeysSchema(db)
} finally {
  await db.close()
}
