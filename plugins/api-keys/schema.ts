import type { ConnectionPool } from '../db-pool/index.js'
import { KEY_CHANGE_CHANNEL } from './key-changes.js'

/**
 * The `api_keys` table the plugin reads, and the trigger that announces on `api_key_changed` every change that ends
 * or narrows what a key grants (revoked, deleted, scopes or secret changed, table truncated), after commit, whoever
 * made it. Without the trigger a revocation made outside a running instance waits for the verdict cache's TTL.
 * Idempotent: every statement creates only what is missing or replaces it with the same definition.
 * `test/schema/api-keys-schema.test.ts` checks it matches what the services' migrations build.
 */
export const API_KEYS_SCHEMA = `
CREATE TABLE IF NOT EXISTS api_keys (
  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{12}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  secret_hash bytea NOT NULL,
  scopes text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE OR REPLACE FUNCTION api_key_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('${KEY_CHANGE_CHANNEL}', json_build_object('schema', TG_TABLE_SCHEMA, 'all', true)::text);
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('${KEY_CHANGE_CHANNEL}', json_build_object('schema', TG_TABLE_SCHEMA, 'id', OLD.id, 'revoked', true)::text);
  ELSIF OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.scopes IS DISTINCT FROM NEW.scopes
     OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.id IS DISTINCT FROM NEW.id THEN
    PERFORM pg_notify('${KEY_CHANGE_CHANNEL}', json_build_object('schema', TG_TABLE_SCHEMA, 'id', OLD.id, 'revoked', NEW.revoked_at IS NOT NULL OR OLD.id IS DISTINCT FROM NEW.id)::text);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_key_changed_notify();
CREATE OR REPLACE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed_notify();
`

// Instances starting together would otherwise race on CREATE OR REPLACE FUNCTION ("tuple concurrently updated").
const SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('lead-chassis:api_keys schema'))"

/**
 * Creates the `api_keys` table and its change trigger in the pool's schema where they are missing (PostgreSQL 14 or
 * later). For a service without migrations of its own; one with migrations runs `API_KEYS_SCHEMA` in one of them.
 */
export async function createApiKeysSchema (db: ConnectionPool): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(SCHEMA_LOCK)
    await tx.query(API_KEYS_SCHEMA)
  })
}
