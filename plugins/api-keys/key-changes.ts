import type { ConnectionPool, PoolLogger } from '../db-pool/index.js'
import type { ApiKeyStore, KeyChange } from './key-store.js'

/** The channel the api_keys trigger announces revocations and other key changes on (see the migrations). */
export const KEY_CHANGE_CHANNEL = 'api_key_changed'

function parse (payload: string, schema: string): KeyChange | undefined {
  let message: { schema?: unknown, id?: unknown, revoked?: unknown, all?: unknown }
  try {
    message = JSON.parse(payload) as typeof message
  } catch {
    return undefined
  }
  if (message.schema !== schema) return undefined
  if (message.all === true) return { all: true }
  return typeof message.id === 'string' ? { id: message.id, revoked: message.revoked !== false } : undefined
}

/**
 * Makes `store` follow the key changes PostgreSQL announces, whoever made them (the keys CLI with or without
 * Redis, a service, a manual UPDATE or DELETE): each drops the key's cached verdict here and in Redis and reaches
 * `onKeyChange` listeners. While the notification link is down, verdicts are not reused (each request reads
 * PostgreSQL); once it is back, every cached verdict is dropped, since a revocation may have gone unheard.
 * Resolves once listening (rejects when the database cannot be reached); returns the function that stops it.
 */
export async function followKeyChanges (store: ApiKeyStore, db: ConnectionPool, log: PoolLogger): Promise<() => void> {
  const { rows } = await db.query<{ schema: string }>('SELECT current_schema() AS schema')
  const schema = rows[0]?.schema ?? 'public'
  const failed = (err: unknown): void => log.error({ err: { message: (err as Error).message } }, 'applying an API key change failed')
  return db.notifications.subscribe(KEY_CHANGE_CHANNEL, {
    notification: (payload) => {
      const change = parse(payload, schema)
      if (change) store.keyChanged(change).catch(failed)
    },
    down: () => store.distrustCache(),
    up: () => { store.resync().catch(failed) }
  })
}
