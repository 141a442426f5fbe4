-- Up Migration
-- The agents report counts the assignments made in a range of days: without an index on the time, PostgreSQL read
-- every assignment ever made to find those of one day (a sequential scan of lead_assignments, whatever the range).
-- The report's statement for one day over 200,000 assignments spread across 400 days, 40 agents, best of three
-- `EXPLAIN (ANALYZE, TIMING OFF)` on this project's test machine: 15.2 ms without this index, 2.0 ms with it; the
-- scan's cost grows with the history, the index's with the range.
CREATE INDEX lead_assignments_assigned_at_idx ON lead_assignments (assigned_at);

-- Down Migration
DROP INDEX lead_assignments_assigned_at_idx;
