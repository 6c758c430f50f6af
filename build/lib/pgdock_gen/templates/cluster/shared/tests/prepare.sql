-- pg-dock's smoke test, step 1: a table to fill.
CREATE TABLE IF NOT EXISTS testtable (id serial PRIMARY KEY, data text);
