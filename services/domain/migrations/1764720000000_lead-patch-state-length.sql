-- Up Migration
-- lead_patch without an explicit cast of the state to character(2), which cut a longer value to its first two
-- characters: 'CAX' was compared as 'CA' (no change, when the lead was in CA) or written as 'CA'. The text is now
-- compared as text and assigned to the column, whose assignment refuses a value too long (22001, a 400), as the
-- statement lead_patch replaced did.
CREATE OR REPLACE FUNCTION lead_patch(p_id uuid, p_actor text, p_fields text[], p_values text[])
RETURNS TABLE ("isAfter" boolean, id uuid, "firstName" text, "lastName" text, email text, phone text, product text,
  state character(2), status text, score integer, source text, "createdAt" timestamptz, "updatedAt" timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  b leads;
  a leads;
  changed text[] := '{}';
  v text;
  differs boolean;
BEGIN
  SELECT * INTO b FROM leads l WHERE l.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  FOR i IN 1 .. coalesce(array_length(p_fields, 1), 0) LOOP
    v := p_values[i];
    differs := CASE p_fields[i]
      WHEN 'firstName' THEN b.first_name IS DISTINCT FROM v
      WHEN 'lastName' THEN b.last_name IS DISTINCT FROM v
      WHEN 'email' THEN b.email IS DISTINCT FROM v
      WHEN 'phone' THEN b.phone IS DISTINCT FROM v
      WHEN 'product' THEN b.product IS DISTINCT FROM v
      WHEN 'state' THEN b.state::text IS DISTINCT FROM v
      WHEN 'source' THEN b.source IS DISTINCT FROM v
      WHEN 'score' THEN b.score IS DISTINCT FROM v::integer
      WHEN 'status' THEN b.status IS DISTINCT FROM v
    END;
    -- IS DISTINCT FROM is never NULL: NULL is a field this function does not know, refused rather than ignored.
    IF differs IS NULL THEN
      RAISE EXCEPTION 'lead_patch: % is not a field of a lead', p_fields[i];
    END IF;
    IF differs THEN
      changed := changed || p_fields[i];
    END IF;
  END LOOP;
  "isAfter" := false; id := b.id; "firstName" := b.first_name; "lastName" := b.last_name; email := b.email;
  phone := b.phone; product := b.product; state := b.state; status := b.status; score := b.score; source := b.source;
  "createdAt" := b.created_at; "updatedAt" := b.updated_at;
  RETURN NEXT;
  IF cardinality(changed) = 0 THEN
    RETURN;
  END IF;
  UPDATE leads l SET
    first_name = CASE WHEN 'firstName' = ANY(p_fields) THEN p_values[array_position(p_fields, 'firstName')] ELSE l.first_name END,
    last_name = CASE WHEN 'lastName' = ANY(p_fields) THEN p_values[array_position(p_fields, 'lastName')] ELSE l.last_name END,
    email = CASE WHEN 'email' = ANY(p_fields) THEN p_values[array_position(p_fields, 'email')] ELSE l.email END,
    phone = CASE WHEN 'phone' = ANY(p_fields) THEN p_values[array_position(p_fields, 'phone')] ELSE l.phone END,
    product = CASE WHEN 'product' = ANY(p_fields) THEN p_values[array_position(p_fields, 'product')] ELSE l.product END,
    state = CASE WHEN 'state' = ANY(p_fields) THEN p_values[array_position(p_fields, 'state')] ELSE l.state END,
    source = CASE WHEN 'source' = ANY(p_fields) THEN p_values[array_position(p_fields, 'source')] ELSE l.source END,
    score = CASE WHEN 'score' = ANY(p_fields) THEN p_values[array_position(p_fields, 'score')]::integer ELSE l.score END,
    status = CASE WHEN 'status' = ANY(p_fields) THEN p_values[array_position(p_fields, 'status')] ELSE l.status END,
    updated_at = now()
  WHERE l.id = p_id
  RETURNING l.* INTO a;
  INSERT INTO lead_activities (lead_id, type, details, actor)
  VALUES (a.id, CASE WHEN 'status' = ANY(changed) THEN 'status_changed' ELSE 'updated' END,
    jsonb_build_object('fields', to_jsonb(changed)) || CASE WHEN 'status' = ANY(changed)
      THEN jsonb_build_object('status', jsonb_build_object('from', b.status, 'to', a.status)) ELSE '{}'::jsonb END,
    p_actor);
  "isAfter" := true; id := a.id; "firstName" := a.first_name; "lastName" := a.last_name; email := a.email;
  phone := a.phone; product := a.product; state := a.state; status := a.status; score := a.score; source := a.source;
  "createdAt" := a.created_at; "updatedAt" := a.updated_at;
  RETURN NEXT;
END
$$;

-- Down Migration
CREATE OR REPLACE FUNCTION lead_patch(p_id uuid, p_actor text, p_fields text[], p_values text[])
RETURNS TABLE ("isAfter" boolean, id uuid, "firstName" text, "lastName" text, email text, phone text, product text,
  state character(2), status text, score integer, source text, "createdAt" timestamptz, "updatedAt" timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  b leads;
  a leads;
  changed text[] := '{}';
  v text;
  differs boolean;
BEGIN
  SELECT * INTO b FROM leads l WHERE l.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  FOR i IN 1 .. coalesce(array_length(p_fields, 1), 0) LOOP
    v := p_values[i];
    differs := CASE p_fields[i]
      WHEN 'firstName' THEN b.first_name IS DISTINCT FROM v
      WHEN 'lastName' THEN b.last_name IS DISTINCT FROM v
      WHEN 'email' THEN b.email IS DISTINCT FROM v
      WHEN 'phone' THEN b.phone IS DISTINCT FROM v
      WHEN 'product' THEN b.product IS DISTINCT FROM v
      WHEN 'state' THEN b.state IS DISTINCT FROM v::character(2)
      WHEN 'source' THEN b.source IS DISTINCT FROM v
      WHEN 'score' THEN b.score IS DISTINCT FROM v::integer
      WHEN 'status' THEN b.status IS DISTINCT FROM v
    END;
    -- IS DISTINCT FROM is never NULL: NULL is a field this function does not know, refused rather than ignored.
    IF differs IS NULL THEN
      RAISE EXCEPTION 'lead_patch: % is not a field of a lead', p_fields[i];
    END IF;
    IF differs THEN
      changed := changed || p_fields[i];
    END IF;
  END LOOP;
  "isAfter" := false; id := b.id; "firstName" := b.first_name; "lastName" := b.last_name; email := b.email;
  phone := b.phone; product := b.product; state := b.state; status := b.status; score := b.score; source := b.source;
  "createdAt" := b.created_at; "updatedAt" := b.updated_at;
  RETURN NEXT;
  IF cardinality(changed) = 0 THEN
    RETURN;
  END IF;
  UPDATE leads l SET
    first_name = CASE WHEN 'firstName' = ANY(p_fields) THEN p_values[array_position(p_fields, 'firstName')] ELSE l.first_name END,
    last_name = CASE WHEN 'lastName' = ANY(p_fields) THEN p_values[array_position(p_fields, 'lastName')] ELSE l.last_name END,
    email = CASE WHEN 'email' = ANY(p_fields) THEN p_values[array_position(p_fields, 'email')] ELSE l.email END,
    phone = CASE WHEN 'phone' = ANY(p_fields) THEN p_values[array_position(p_fields, 'phone')] ELSE l.phone END,
    product = CASE WHEN 'product' = ANY(p_fields) THEN p_values[array_position(p_fields, 'product')] ELSE l.product END,
    state = CASE WHEN 'state' = ANY(p_fields) THEN p_values[array_position(p_fields, 'state')]::character(2) ELSE l.state END,
    source = CASE WHEN 'source' = ANY(p_fields) THEN p_values[array_position(p_fields, 'source')] ELSE l.source END,
    score = CASE WHEN 'score' = ANY(p_fields) THEN p_values[array_position(p_fields, 'score')]::integer ELSE l.score END,
    status = CASE WHEN 'status' = ANY(p_fields) THEN p_values[array_position(p_fields, 'status')] ELSE l.status END,
    updated_at = now()
  WHERE l.id = p_id
  RETURNING l.* INTO a;
  INSERT INTO lead_activities (lead_id, type, details, actor)
  VALUES (a.id, CASE WHEN 'status' = ANY(changed) THEN 'status_changed' ELSE 'updated' END,
    jsonb_build_object('fields', to_jsonb(changed)) || CASE WHEN 'status' = ANY(changed)
      THEN jsonb_build_object('status', jsonb_build_object('from', b.status, 'to', a.status)) ELSE '{}'::jsonb END,
    p_actor);
  "isAfter" := true; id := a.id; "firstName" := a.first_name; "lastName" := a.last_name; email := a.email;
  phone := a.phone; product := a.product; state := a.state; status := a.status; score := a.score; source := a.source;
  "createdAt" := a.created_at; "updatedAt" := a.updated_at;
  RETURN NEXT;
END
$$;
