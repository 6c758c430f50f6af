"""pgdock-agent: makes one container converge to its role in the cluster, then keeps it there.

It runs under tini as the container's main process and does what pg-dock left to an
operator: first starts (initdb, clone, restore, witness), later starts (resume; never
re-clone an intact data directory; never come up as a second primary), fencing, stepping
down and rejoining. repmgr calls back into it (service commands, promote/follow, events).
Only the standard library and psycopg: it lives in the image.

Rooms:
  contract    names shared with the generator and the backup sidecar
  decide      what to do next, from observed facts (pure)
  node        this node's settings, status line and log
  peers       the other members and the prober that keeps their answers fresh
  postgres    pg_ctl, local connections, the data directory
  bootstrap   first starts: initdb, clone, restore, witness
  rejoin      a former primary becomes a standby by pg_rewind
  events      the event log and the failover hooks (detached, with a time budget)
  files       secrets and config files installed where programs want them
  status      what `pgdock-gen status` shows, and the healthcheck
  health      the health API's verdicts (/primary, /replica, /health), from observed facts (pure)
  metrics     those facts in Prometheus' text format (pure)
  observe     gathers the API's facts: one local query, the data volume, the supervisor
  api         the health API's HTTP server, a thread of the supervisor
  supervisor  observe, decide, apply: the container's main loop
"""
