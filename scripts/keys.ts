import { parseArgs } from 'node:util'
import { ApiKeyStore } from '@lead-chassis/plugins/api-keys'
import { createCacheManager } from '@lead-chassis/plugins/cache'
import { createConnectionPool } from '@lead-chassis/plugins/db-pool'
import { createRedisClient } from '@lead-chassis/plugins/redis'
import { migrate } from '../services/domain/migrate.js'
import { SCOPES } from '../services/domain/scopes.js'
import { loadScriptsConfig } from './lib/config.js'
import { openDatabase } from './lib/database.js'

const USAGE = `usage: npm run keys -- mint --name NAME [--scopes SCOPE,...]   (scopes: ${SCOPES.join(', ')})
       npm run keys -- revoke --id ID
       npm run keys -- list`

/** How long the cache's link to Redis is waited for, alongside the migrations. */
const CACHE_LINK_WAIT_MS = 250

const parsed = (() => {
  try {
    return parseArgs({ allowPositionals: true, options: { name: { type: 'string' }, scopes: { type: 'string', default: '' }, id: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
  } catch (error) {
    // A mistyped option during an incident deserves the usage, not a TypeError's stack.
    console.error(`${(error as Error).message.split('. ')[0] ?? ''}\n${USAGE}`)
    process.exit(2)
  }
})()
const { values, positionals } = parsed
if (values.help) {
  console.log(USAGE)
  process.exit(0)
}
const command = positionals[0]
if (!['mint', 'revoke', 'list'].includes(command ?? '') || (command === 'mint' && !values.name) || (command === 'revoke' && !values.id)) {
  console.error(USAGE)
  process.exit(2)
}

const config = loadScriptsConfig()
const db = await openDatabase({ databaseUrl: config.DATABASE_URL, port: config.EMBEDDED_PG_PORT, dataDir: config.EMBEDDED_PG_DATA_DIR, log: (m) => console.error(`[keys] ${m}`) })
const pool = createConnectionPool({ connectionString: db.url, schema: config.DB_SCHEMA, min: 0, max: 2, healthCheckInterval: 0 })
// Running instances hear a revocation from PostgreSQL itself (a trigger's NOTIFY), with or without REDIS_URL here;
// with it, the shared Redis tier is cleared too before this command returns. The platform's client, not a bare
// one: ioredis's connect() waits for a ready check a hung Redis never answers, and its offline queue would hold the
// DEL forever; here a Redis that does not answer costs the cache's budget and the revocation goes on.
const redis = config.REDIS_URL ? createRedisClient({ url: config.REDIS_URL, name: 'keys-cli' }) : undefined
// One line, not ioredis's "Unhandled error event" stack at every reconnect: during an incident an operator must not
// read a revocation that succeeded as one that failed.
let redisErrorSaid = false
redis?.on('error', (error: Error) => {
  if (redisErrorSaid) return
  redisErrorSaid = true
  console.error(`[keys] Redis unavailable (${error.message}): the revocation goes on without it, the running instances hear it from PostgreSQL`)
})
const cache = redis ? createCacheManager(redis, { prefix: config.CACHE_PREFIX }) : undefined
try {
  // The cache's link, on which the other instances acknowledge dropping the key, comes up while the migrations run
  // and is waited for no longer than CACHE_LINK_WAIT_MS: a hung Redis must not hold a revocation up.
  await Promise.all([migrate({ databaseUrl: db.url, schema: config.DB_SCHEMA }), cache?.ready(CACHE_LINK_WAIT_MS)])
  const store = new ApiKeyStore(pool, cache)
  if (command === 'mint') {
    const scopes = (values.scopes ?? '').split(',').map((s) => s.trim()).filter(Boolean)
    const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s))
    if (unknown.length > 0) {
      console.error(`unknown scopes: ${unknown.join(', ')} (known: ${SCOPES.join(', ')})`)
      process.exit(2)
    }
    const minted = await store.mint(values.name as string, scopes)
    console.log(`minted key ${minted.id} (${minted.name}) with scopes [${minted.scopes.join(', ')}]`)
    console.log('the key is shown this once; store it now:')
    console.log(minted.key)
  } else if (command === 'revoke') {
    const done = await store.revoke(values.id as string)
    console.log(done ? `revoked ${values.id}` : `no active key ${values.id}`)
    if (!done) process.exitCode = 1
  } else {
    for (const k of await store.list()) console.log(`${k.id}  ${k.revokedAt ? 'revoked' : 'active '}  [${k.scopes.join(',')}]  ${k.name}`)
  }
} finally {
  await cache?.close()
  redis?.disconnect()
  await pool.close()
  await db.stop()
}
