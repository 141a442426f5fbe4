-- Up Migration
CREATE TABLE leads (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  first_name text NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
  last_name text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
  email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  phone text CHECK (length(phone) <= 32),
  product text NOT NULL CHECK (product IN ('auto', 'home', 'life', 'health', 'commercial')),
  state char(2) NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
  status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'contacted', 'qualified', 'converted', 'lost')),
  score integer NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100),
  source text NOT NULL DEFAULT 'web' CHECK (length(source) BETWEEN 1 AND 64),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One lead per person and product: the natural key of imports and the 409 on duplicates.
CREATE UNIQUE INDEX leads_email_product_key ON leads (lower(email), product);
-- Keyset pagination: each sort order is (column, id); each equality filter leads its own index.
CREATE INDEX leads_created_at_id_idx ON leads (created_at DESC, id DESC);
CREATE INDEX leads_score_id_idx ON leads (score DESC, id DESC);
CREATE INDEX leads_status_created_at_idx ON leads (status, created_at DESC, id DESC);
CREATE INDEX leads_product_created_at_idx ON leads (product, created_at DESC, id DESC);
CREATE INDEX leads_state_created_at_idx ON leads (state, created_at DESC, id DESC);

CREATE TABLE agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  email text NOT NULL UNIQUE,
  states char(2)[] NOT NULL DEFAULT '{}',
  products text[] NOT NULL DEFAULT '{}',
  capacity integer NOT NULL DEFAULT 25 CHECK (capacity >= 0),
  active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_assignments (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_id uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
  agent_id uuid NOT NULL REFERENCES agents (id),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'released', 'completed')),
  assigned_at timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz
);
-- A lead has at most one active assignment.
CREATE UNIQUE INDEX lead_assignments_active_lead_key ON lead_assignments (lead_id) WHERE status = 'active';
CREATE INDEX lead_assignments_agent_active_idx ON lead_assignments (agent_id) WHERE status = 'active';

CREATE TABLE lead_activities (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_id uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
  type text NOT NULL,
  details jsonb NOT NULL DEFAULT '{}',
  actor text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_activities_lead_id_idx ON lead_activities (lead_id, id DESC);

-- Down Migration
DROP TABLE lead_activities;
DROP TABLE lead_assignments;
DROP TABLE agents;
DROP TABLE leads;
