-- pg-dock's smoke test, step 3: run on every standby; it should print 1000000.
SELECT count(*) FROM testtable;
