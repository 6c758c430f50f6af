"""The names that cross a boundary between pgdock's parts, spelled once.

The generator writes them into env files and compose files, the agent and the
backup sidecar read them inside the containers, and the operator's commands
reach into containers by them. This module is the only place they are spelled.
It uses nothing but the standard library: the base image carries it as
`pgdock_agent/contract.py` (a symlink in the source tree, a plain file in a
rendered repo), so the generator and the agent import the same file.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# ---------------------------------------------------------------- paths inside a node's containers

CONFIG_STORE = PurePosixPath("/etc/pgdock-store")
"""Where the node's config volume is mounted (read-only): one folder per config version under
CONFIG_VERSIONS, and CONFIG_CURRENT, a symlink to one of them, which a deploy switches in one rename."""
CONFIG_VERSIONS = "versions"
CONFIG_CURRENT = "current"
CONFIG_VERSIONS_KEPT = 5
"""Config versions kept in the volume besides the current one (older ones are removed by the next deploy)."""
CONFIG = PurePosixPath("/etc/pgdock")
"""The node's config as every program reads it: in the base image a symlink to CONFIG_STORE/current."""
REPMGR_CONF = CONFIG / "repmgr.conf"
SHARED = CONFIG / "shared"
FAILOVER_HOOKS = SHARED / "failover"
INITDB_SQL = SHARED / "initdb" / "initdb.sql"
SECRETS = PurePosixPath("/run/pgdock/secrets")
"""The node's secrets volume (read-only): never part of an image."""
RUN = PurePosixPath("/run/pgdock")
"""Scratch state of one container's life: markers, the status line, the log FIFO."""
STATE = PurePosixPath("/var/lib/pgdock")
"""The node's data volume: PostgreSQL's data directory and the logs that must survive restarts."""
PGDATA = STATE / "data"
EVENTS = STATE / "events.jsonl"
HISTORY = STATE / "history.jsonl"
BACKUP_LOG = STATE / "backups.log"
BOOTSTRAPPING = STATE / "bootstrapping"
"""Present from the first initdb until the last bootstrap step: a start that finds it redoes the bootstrap."""
ARCHIVE_GAP = STATE / "archive-gap.json"
"""Written by `pgdock-agent archive` when it gave WAL up (past postgres.max_wal_keep during an archive outage);
removed by the backup sidecar after the next base backup, which makes point-in-time recovery whole again."""
ARCHIVE_SPOOL = STATE / "archive-spool"
"""Markers of WAL files an archive batch stored ahead of PostgreSQL's asking (archive.py): empty files."""
RESTORE_SPOOL = STATE / "restore-spool"
"""WAL files a restore fetched ahead of recovery's asking (restore_wal.py): at most backup.jobs of them."""
FORCE_PRIMARY = STATE / "force-primary"
"""Written by `pgdock-agent unfence`: the operator vouches that this node may start as primary alone."""
PAUSED = STATE / "paused"
"""Maintenance mode on this node (`pgdock-gen pause`; `resume` removes it): the promotion gate refuses, and the
agent keeps repmgrd paused, re-applying it after a restart of PostgreSQL or the container and after a clone."""
REINIT = STATE / "reinit"
"""Written by `pgdock-gen reinit`: the agent's next start empties the data directory and clones it again from
the primary (never initdb); removed once the clone is done."""
REPMGRD_STATE_FILE = PGDATA / "pg_stat" / "repmgrd_state.txt"
"""repmgr's own record of `repmgr service pause` ("NODE_ID:1"), read when repmgrd starts: a container that starts
without PAUSED drops it, so a resume given while the node was down holds."""
BACKUP_HEARTBEAT = PurePosixPath("/tmp/pgdock-backup.heartbeat")
"""Touched by the backup sidecar's scheduler while it runs (waiting or backing up); its healthcheck
(`pgdock-backup health`) checks its age. In the sidecar's own filesystem: it dies with the container."""
BACKUP_HEARTBEAT_SECONDS = 30
"""How often the scheduler touches the heartbeat; older than BACKUP_STALE_SECONDS means unhealthy."""
BACKUP_STALE_SECONDS = 300
SOCKET_DIR = PurePosixPath("/var/run/postgresql")
"""Shared with the backup sidecar, which logs in over it as the postgres OS user."""
HOME = PurePosixPath("/var/lib/postgresql")
TLS = HOME / "tls"
CA_CERT = TLS / "ca.crt"

INITDB_OPTIONS = ("--data-checksums", "-U", "postgres", "--auth-local=peer", "--auth-host=scram-sha-256",
                  "--encoding=UTF8", "--locale=C.UTF-8")
"""How every data directory is made: the first primary's bootstrap and a major upgrade's new cluster alike
(pg_upgrade wants checksums, encoding and locale equal on both sides)."""
UPGRADE_NEW = STATE / "data.new"
"""A major upgrade's new data directory, beside PGDATA on the same volume (pg_upgrade --link hard-links)."""
UPGRADE_OLD = STATE / "data.old"
"""The old major's data directory after the upgrade swapped it out; `pgdock-gen upgrade --finish` deletes it."""

# ---------------------------------------------------------------- the secrets volume's layout

SECRET_PASSWORDS = "passwords"
"""One file per password: superuser, repmgr, replication, app (the witness gets the first two)."""
PASSWORD_FILES = ("superuser", "app", "repmgr", "replication")
"""One password per role: superuser, application owner, repmgr metadata, streaming replication."""
SECRET_CA_CERT = "tls/ca.crt"
SECRET_CA_KEY = "tls/ca.key"
SECRET_NODE_CERT = "tls/node.crt"
SECRET_NODE_KEY = "tls/node.key"
SECRET_SSH_KEY = "ssh/id_ed25519"
SECRET_SSH_PUB = "ssh/id_ed25519.pub"
SECRET_SSH_HOST_KEY = "ssh/host_ed25519"
SECRET_KNOWN_HOSTS = "ssh/known_hosts"
SECRET_S3_ENV = "s3.env"
SECRET_S3_CA = "s3-ca.crt"
SECRET_HETZNER_ENV = "hetzner.env"
"""The Hetzner robot account and failover IP of shared/failover/hetzner.sh."""
SECRET_WEBHOOK_ENV = "webhook.env"
"""PGDOCK_WEBHOOK_URL of shared/failover/hook.sh."""

# ---------------------------------------------------------------- environment variables of a node

ENV_CLUSTER = "PGDOCK_CLUSTER"
ENV_NODE = "PGDOCK_NODE"
ENV_ADDRESS = "PGDOCK_ADDRESS"
ENV_NODE_ID = "PGDOCK_NODE_ID"
ENV_ROLE = "PGDOCK_ROLE"
"""primary (the initial one), standby or witness: where the node starts, not what it is now."""
ENV_PG_VERSION = "PGDOCK_PG_VERSION"
ENV_PORT = "PGDOCK_PORT"
ENV_SSH_PORT = "PGDOCK_SSH_PORT"
ENV_API_PORT = "PGDOCK_API_PORT"
"""The node's health API (served by the agent on ENV_ADDRESS); unset: no API (a repo rendered before it)."""
ENV_DATABASE = "PGDOCK_DATABASE"
ENV_USER = "PGDOCK_USER"
ENV_PEERS = "PGDOCK_PEERS"
"""Other members: name=address:port:ssh_port, comma-separated."""
ENV_DATA_NODES = "PGDOCK_DATA_NODES"
ENV_REPLICATION_MODE = "PGDOCK_REPLICATION_MODE"
ENV_FENCE_SECONDS = "PGDOCK_FENCE_SECONDS"
ENV_PROMOTE_SECONDS = "PGDOCK_PROMOTE_SECONDS"
"""A standby promotes only after the primary has not answered it for this long."""
ENV_HOOK_SECONDS = "PGDOCK_HOOK_SECONDS"
"""Each failover hook's time budget."""
ENV_BACKUP_URL = "PGDOCK_BACKUP_URL"
ENV_BACKUP_SERVER = "PGDOCK_BACKUP_SERVER"
"""backup.server: the folder under the backup URL holding this cluster's base backups and WAL (barman's server
name; pgBackRest's stanza)."""
ENV_BACKUP_SCHEDULE = "PGDOCK_BACKUP_SCHEDULE"
ENV_BACKUP_RETENTION_DAYS = "PGDOCK_BACKUP_RETENTION_DAYS"
ENV_BACKUP_COMPRESSION = "PGDOCK_BACKUP_COMPRESSION"
ENV_BACKUP_JOBS = "PGDOCK_BACKUP_JOBS"
"""backup.jobs: parallel uploads of a base backup, WAL files archived at once, WAL files a restore fetches ahead."""
ENV_BACKUP_ENGINE = "PGDOCK_BACKUP_ENGINE"
BACKUP_ENGINES = ("barman", "pgbackrest")
"""backup.engine: barman-cloud (the default for now) or pgBackRest (docs/backup-engine-plan.md)."""
DEFAULT_BACKUP_ENGINE = "barman"
COMPRESSION_FLAGS: dict[str, list[str]] = {"gzip": ["--gzip"], "bzip2": ["--bzip2"], "none": []}
"""backup.compression -> barman-cloud's flag, for base backups and WAL alike (the algorithms both take;
Debian trixie's python3-snappy, barman's fast one, crashes on Python 3.13: segfault in its crc32c)."""
PGBACKREST_COMPRESS_TYPES: dict[str, str] = {"gzip": "gz", "bzip2": "bz2", "none": "none", "zstd": "zst",
                                             "lz4": "lz4"}
"""backup.compression -> pgBackRest's compress-type; zstd and lz4 only with pgBackRest."""
DEFAULT_COMPRESSION = "gzip"
DEFAULT_COMPRESSION_BY_ENGINE = {"barman": DEFAULT_COMPRESSION, "pgbackrest": "zstd"}
PGBACKREST_CONFIG = str(HOME / "pgbackrest.conf")
"""pgBackRest's config file, written by the agent and the sidecar at start with the S3 keys (mode 0600);
everything else reaches pgBackRest as PGBACKREST_* variables in the node's env file."""
PGBACKREST_SPOOL = str(STATE / "pgbackrest-spool")
"""archive-async's spool (on the data volume, beside PGDATA): pgBackRest's own, losing it is harmless."""
GZIP_LEVEL = 1
"""pgdock's gzip level (barman-cloud's own is 9, with no option): on PostgreSQL pages level 9 ran at 12 MB/s
on one core here and level 1 at 170 MB/s, for the same stored size (310 MB of pgbench tables: 24.7 s vs 1.8 s,
21.5 MB both). See pgdock_agent.base_backup and cloudwal."""
DEFAULT_BACKUP_JOBS = 4
ENV_S3_REGION = "PGDOCK_S3_REGION"
ENV_S3_PATH_STYLE = "PGDOCK_S3_PATH_STYLE"
ENV_S3_ENDPOINT = "PGDOCK_S3_ENDPOINT"
ENV_MAX_WAL_KEEP_MB = "PGDOCK_MAX_WAL_KEEP_MB"
"""postgres.max_wal_keep in MB: pg_wal's bound during an archive outage (archive.py)."""
ENV_POOLER_PORT = "PGDOCK_POOLER_PORT"
"""PgBouncer's port on the node's address (spec `pooler`); unset: no pooler on this node (the witness, or a
cluster without one)."""
ENV_POOL_MODE = "PGDOCK_POOL_MODE"
ENV_RESTORE_SERVER = "PGDOCK_RESTORE_SERVER"
ENV_RESTORE_TARGET = "PGDOCK_RESTORE_TARGET"
ENV_SECRETS_DIR = "PGDOCK_SECRETS_DIR"
"""Where the failover hooks read the node's secrets; SECRETS unless set (the hooks' tests point it elsewhere)."""
ENV_EVENT_JSON = "PGDOCK_EVENT_JSON"
"""Handed to the failover hooks: the event as one JSON object."""

# ---------------------------------------------------------------- events (pgdock's own; repmgr adds its own names)

EVENT_FENCED = "pgdock_fenced"
EVENT_UNFENCED = "pgdock_unfenced"
EVENT_STEP_DOWN = "pgdock_step_down"
EVENT_FOLLOW = "pgdock_follow"
"""The agent ran `repmgr standby follow` of the primary (success: it worked): the standby's repmgrd had missed the
failover (decide.FOLLOW_GRACE)."""
EVENT_TWIN_PRIMARY = "pgdock_twin_primary"
EVENT_CLONE = "pgdock_clone"
EVENT_REJOIN = "pgdock_rejoin"
EVENT_RESTORE = "pgdock_restore"
EVENT_BOOTSTRAP_REDONE = "pgdock_bootstrap_redone"
EVENT_PROMOTE_WAIT = "pgdock_promote_wait"
"""repmgrd elected this node; the promotion gate (failover_validation_command) waits for the primary's silence."""
EVENT_WAL_DROPPED = "pgdock_wal_dropped"
"""Archiving failed and pg_wal grew past postgres.max_wal_keep: WAL was given up, the archive has a gap."""
EVENT_SLOT_LOST = "pgdock_slot_lost"
"""A replication slot's standby fell more than max_slot_wal_keep_size behind: it must be cloned again."""
EVENT_PROMOTE_REFUSED = "pgdock_promote_refused"
"""The promotion gate said no (the primary answered again, or a member still hears it); repmgrd elects again."""
EVENT_STANDBY_PROMOTE = "standby_promote"
"""repmgr's name, kept for the promotions pgdock's promote command performs."""
EVENT_HOOK_PREFIX = "hook:"
"""A hook's own result is logged as an event named hook:<script>."""
PROMOTION_EVENTS = ("repmgrd_failover_promote", EVENT_STANDBY_PROMOTE)
"""repmgr's names for "this node became primary"."""
EVENT_UPSTREAM_DISCONNECT = "repmgrd_upstream_disconnect"
"""repmgr's: a standby or the witness lost its connection to the primary (failure detected)."""
EVENT_PAUSED = "pgdock_paused"
EVENT_RESUMED = "pgdock_resumed"
EVENT_MANUAL_FAILOVER = "pgdock_failover"
"""An operator promoted a standby by hand (`pgdock-gen failover`)."""
EVENT_REINIT = "pgdock_reinit"
EVENT_REMOVED = "pgdock_removed"
"""Recorded on the primary: a member was unregistered and stopped (`pgdock-gen remove`)."""
EVENT_RESTARTED = "pgdock_restart"
"""A node's container was recreated by a rolling restart (`pgdock-gen restart`), on the image named."""
EVENT_UPGRADE_STEP = "pgdock_upgrade_step"
"""One step of a major upgrade (`pgdock-gen upgrade`), recorded on the primary when it is done."""
EVENT_UPGRADE = "pgdock_upgrade"
"""A major upgrade finished (details: from and to versions, the write downtime), or was rolled back (failed)."""

# ---------------------------------------------------------------- `pgdock-agent` commands the operator's commands run

AGENT = "pgdock-agent"
NODE_SERVICE = "postgres"
"""The node's main service in its compose file (the agent, PostgreSQL, repmgrd, sshd)."""
AGENT_EVENT = "event"
"""`event NODE_ID EVENT OK TIME DETAILS`: repmgr's event_notification_command, also how operators' commands log."""
AGENT_PROMOTE = "promote"
AGENT_FOLLOW = "follow"
AGENT_PAUSE = "pause"
AGENT_RESUME = "resume"
AGENT_POOLER = "pooler"
"""`pooler pause|resume`: the switchover holds every node's PgBouncer around the change of primary."""
AGENT_SSHD = "sshd"
"""The node's sshd alone, no PostgreSQL: a major upgrade's standby end of rsync --hard-links."""
AGENT_UPGRADE_PUSH = "upgrade-push"
"""`upgrade-push ADDRESS...`: a major upgrade's primary end, rsync of data.old and data to those standbys."""


def replication_slot(node_id: int) -> str:
    """repmgr's name for the slot a standby streams through (use_replication_slots)."""
    return f"repmgr_slot_{node_id}"

# ---------------------------------------------------------------- `pgdock-agent state`: what status shows per node

STATUS_KEYS = ("node", "role", "timeline", "upstream", "lag_bytes", "lag_seconds", "replicas", "status",
               "repmgrd", "registered", "archiving", "paused", "received_lsn", "replayed_lsn")

# ---------------------------------------------------------------- the node's health API (agent, HAProxy, Prometheus)

DEFAULT_API_PORT = 8008
API_PRIMARY = "/primary"
"""200 only on a writable, unfenced primary: HAProxy's check for the read-write port."""
API_REPLICA = "/replica"
"""200 on a standby that streams (within `?lag=`): HAProxy's check for the read-only port."""
API_HEALTH = "/health"
API_POOLER = "/pooler"
"""200 while the node's PgBouncer accepts connections: HAProxy's check of the poolers' backend (via_pooler)."""
API_STATUS = "/status"
API_METRICS = "/metrics"
"""Prometheus text exposition: what monitoring/prometheus.yml scrapes and monitoring/alerts.yml reads."""

# ---------------------------------------------------------------- the pooler (PgBouncer on every data node)

DEFAULT_POOLER_PORT = 6432
POOL_MODES = ("transaction", "session")
DEFAULT_POOL_MODE = "transaction"
POOLER_ROLE = "pgdock_pooler"
"""The role PgBouncer's auth_query logs in as, with the node's certificate (no password anywhere): it may only
call POOLER_AUTH_FUNCTION."""
POOLER_AUTH_FUNCTION = "pgdock.pooler_auth"
"""SECURITY DEFINER: the SCRAM secret of a login role that is not a superuser, a replication role or one of
pgdock's own; created in the cluster's database by the primary's agent."""
IDENT_MAP = "pgdock"
"""pg_ident.conf's map from a data node's certificate name (its node name) to POOLER_ROLE."""
POOLER_PAUSED = RUN / "pooler-paused"
"""Written by `pgdock-agent pooler pause`: the primary the pool was paused on; the agent resumes the pool once
it sees another primary ready (or after POOLER_PAUSE_MAX_SECONDS), and removes the file."""
POOLER_PAUSE_MAX_SECONDS = 60
"""A pause nobody lifts (a switchover that died) ends by itself after this."""

# ---------------------------------------------------------------- Docker names

BASE_IMAGE_REPO = "pgdock/base"
"""PostgreSQL + repmgr + the agent; tagged pg<major>-<hash of base-image/> (images.image_names)."""
UPGRADE_IMAGE_REPO = "pgdock/upgrade"
"""The new major's base image plus the old major's server binaries (base-image/upgrade.Dockerfile), for
pg_upgrade; tagged pg<old>-pg<new>-<hash of both base tags>."""
UPGRADE_DOCKERFILE = "upgrade.Dockerfile"
"""In base-image/: the upgrade image's Dockerfile, built with the base image's context."""
BACKUP_IMAGE_REPO = "pgdock/backup"
"""The backup sidecar; tagged pg<major>-<hash of backup-image/ and its base tag>."""
LAB_S3_IMAGE = "pgdock/lab-s3:latest"
"""The lab's S3-protocol server (backup-image/lab-s3.Dockerfile); never used in production."""
LAB_S3_PORT = 5000
LAB_S3_TLS_DIR = "/etc/lab-s3"
"""Where the lab's S3 server reads its certificate and key (server.crt, server.key; lab_s3.py)."""
VOLUME_KINDS = ("config", "secrets", "data", "socket")
LOG_DRIVER = "json-file"
LOG_OPTIONS = {"max-size": "10m", "max-file": "5"}
"""Every container pgdock runs rotates its log: 10 MB × 5 at most (compose services and the lab's S3 server)."""
LABEL_CLUSTER = "org.pgdock.cluster"
LABEL_LAB_ID = "org.pgdock.lab-id"


def container(cluster: str, node: str) -> str:
    """The node's database container, and its compose project."""
    return f"{cluster}-{node}"


LOCK_SUFFIX = "-deploy-lock"
LABEL_LOCK_HOLDER = "org.pgdock.lock-holder"
LABEL_LOCK_SINCE = "org.pgdock.lock-since"


def lock_container(cluster: str, node: str) -> str:
    """A stopped container whose existence is a node's deploy lock (creating a named container is atomic)."""
    return f"{cluster}-{node}{LOCK_SUFFIX}"


BACKUP_SUFFIX = "-backup"


def backup_container(cluster: str, node: str) -> str:
    """The node's backup sidecar: its database container's name plus BACKUP_SUFFIX."""
    return container(cluster, node) + BACKUP_SUFFIX


def lab_s3_container(cluster: str) -> str:
    """The lab's S3-protocol server of a cluster."""
    return f"{cluster}-s3"


def proxy_container(cluster: str) -> str:
    """The cluster's HAProxy (proxy/): its container on an app host, and in the lab on the lab network."""
    return f"{cluster}-proxy"


LAB_PROXY_IMAGE_REPO = "pgdock/lab-proxy"
"""The lab's HAProxy image, tagged with the cluster: it packs that lab's haproxy.cfg (lab addresses)."""


def lab_proxy_image(cluster: str) -> str:
    """The image `lab up` builds from the lab's proxy/ folder."""
    return f"{LAB_PROXY_IMAGE_REPO}:{cluster}"


def prometheus_container(cluster: str) -> str:
    """The lab's Prometheus (`lab up --monitoring`), loading the lab render's monitoring/."""
    return f"{cluster}-prometheus"


LAB_PROMETHEUS_IMAGE_REPO = "pgdock/lab-prometheus"
"""The lab's Prometheus image, tagged with the cluster: it packs that lab's prometheus.yml (lab addresses)
and alerts.yml."""


def lab_prometheus_image(cluster: str) -> str:
    """The image `lab up --monitoring` builds from the lab's monitoring/ folder."""
    return f"{LAB_PROMETHEUS_IMAGE_REPO}:{cluster}"


def volume(cluster: str, node: str, kind: str) -> str:
    """A node's named volume; `kind` is one of VOLUME_KINDS."""
    if kind not in VOLUME_KINDS:
        raise ValueError(f"unknown volume kind {kind!r}")
    return f"{cluster}-{node}-{kind}"


# ---------------------------------------------------------------- values in PostgreSQL's config files


def conf_string(value: str) -> str:
    """`value` as a quoted string of postgresql.conf (and postgresql.auto.conf): both the generator's
    templates and the agent's restore settings write strings this way."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
