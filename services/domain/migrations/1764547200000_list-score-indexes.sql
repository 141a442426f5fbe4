-- Up Migration
-- Lists with two of the three equality filters, sorted by score: no index gave these rows in score order, so
-- PostgreSQL walked leads_score_id_idx from the top and dropped every row the filters refused (for a rare product
-- in a small state, most of the table) to find a page. On the 100k-lead schema `npm run bench` creates, the
-- repository's query (every column, LIMIT 21), best of three `EXPLAIN (ANALYZE, TIMING OFF)`: product + state
-- 3.5 ms on average over the 50 such lists, up to 15 ms (commercial in MI); status + state 2.8 ms, up to 9 ms;
-- status + product 1.7 ms, up to 12 ms. Each index serves one pair in order: 0.1 ms or less, as every other shape.
CREATE INDEX leads_state_product_score_idx ON leads (state, product, score DESC, id DESC);
CREATE INDEX leads_state_status_score_idx ON leads (state, status, score DESC, id DESC);
CREATE INDEX leads_status_product_score_idx ON leads (status, product, score DESC, id DESC);

-- Down Migration
DROP INDEX leads_status_product_score_idx;
DROP INDEX leads_state_status_score_idx;
DROP INDEX leads_state_product_score_idx;
