-- Up Migration
-- API keys: only a hash of the secret is stored; the key itself is shown once, when minted.
CREATE TABLE api_keys (
  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{12}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  secret_hash bytea NOT NULL,
  scopes text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Down Migration
DROP TABLE api_keys;
