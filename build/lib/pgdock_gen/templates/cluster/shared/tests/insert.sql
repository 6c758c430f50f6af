-- pg-dock's smoke test, step 2: one million rows on the primary.
INSERT INTO testtable (data) SELECT md5(random()::text) FROM generate_series(1, 1000000);
