-- Up Migration
-- Every change that ends or narrows what a key grants (revoked, deleted, scopes or secret changed, table truncated)
-- is announced by the database itself on the channel api_key_changed, after commit, whatever made it: the keys
-- CLI, a service, or a manual SQL statement. Running instances LISTEN and drop the key at once (cached verdicts,
-- open WebSockets). The payload names the schema, as instances of several schemas may share one database.
CREATE FUNCTION api_key_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('api_key_changed', json_build_object('schema', TG_TABLE_SCHEMA, 'all', true)::text);
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('api_key_changed', json_build_object('schema', TG_TABLE_SCHEMA, 'id', OLD.id, 'revoked', true)::text);
  ELSIF OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.scopes IS DISTINCT FROM NEW.scopes
     OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.id IS DISTINCT FROM NEW.id THEN
    PERFORM pg_notify('api_key_changed', json_build_object('schema', TG_TABLE_SCHEMA, 'id', OLD.id, 'revoked', NEW.revoked_at IS NOT NULL OR OLD.id IS DISTINCT FROM NEW.id)::text);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_key_changed_notify();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed_notify();

-- Down Migration
DROP TRIGGER api_keys_truncated ON api_keys;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION api_key_changed_notify();
