"""`pgdock-agent COMMAND`: the container's main process (`run`) and the callbacks repmgr, Docker's
healthcheck, the config carrier and operators use. Each command imports only what it needs: repmgr
waits for its callbacks, so they must start fast."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from . import contract

USAGE = """usage: pgdock-agent COMMAND
  run                      the container's main process (the default)
  health                   exit 0 when PostgreSQL accepts connections
  state                    this node's status as JSON
  event N EVENT OK TIME D  repmgr's event_notification_command
  hooks LOG HOOK...        run hooks for $PGDOCK_EVENT_JSON, results to LOG (started by `event`)
  archive PATH [ENGINE]    archive_command: WAL to S3 (barman, or pgbackrest), bounded by postgres.max_wal_keep
  restore-wal SRC SERVER NAME DEST  restore_command of a restored node: WAL from S3, fetched ahead
  base-backup ARGS...      barman-cloud-backup ARGS, gzip at pgdock's level (the backup sidecar)
  validate-failover        repmgrd's failover_validation_command (the promotion gate)
  promote [DETAIL] | follow ID  repmgr's promote_command / follow_command (DETAIL: an operator's promotion)
  pause | resume           maintenance mode on this node: no promotion here, repmgrd paused
  pooler pause|resume      hold this node's PgBouncer (transactions in flight finish) / lift that
  pg-start | pg-stop | pg-restart | pg-reload | reload | repmgrd-stop | repmgrd-start
  install-version SRC STORE  add SRC to the config volume STORE as a version, make it current (the carrier)
  install-config SRC DST   make DST hold exactly SRC's files, swapped in one by one (secrets)
  unfence                  vouch that this former primary may start alone
  sshd                     this node's sshd alone, no PostgreSQL (a major upgrade's standby end)
  upgrade-push ADDRESS...  rsync --hard-links of data.old and data to those standbys (the primary's end)
"""


def dispatch(command: str, args: list[str]) -> int:  # noqa: C901, PLR0911 - one branch per command
    if command == "run":
        from .supervisor import Supervisor

        Supervisor().run()
    elif command == "health":
        from .status import health

        return health()
    elif command == "state":
        import json

        from .status import node_state

        print(json.dumps(node_state()))
    elif command == contract.AGENT_EVENT:
        from .events import record

        node_id, event, success, timestamp, details = (args + [""] * 5)[:5]
        record(event, details, success=success == "1", node_id=node_id, timestamp=timestamp)
    elif command == "hooks":
        from .events import run_hooks

        return run_hooks(Path(args[0]), [Path(a) for a in args[1:]])
    elif command == "archive":
        from .archive import archive

        return archive(*args[:2])
    elif command == "base-backup":
        from .base_backup import main

        main(args)
    elif command == "restore-wal":
        from .restore_wal import restore_wal

        return restore_wal(*args[:4])
    elif command == "validate-failover":
        from .promote import validate

        return validate()
    elif command == contract.AGENT_PROMOTE:
        from .promote import promote

        return promote(*args[:1])
    elif command == contract.AGENT_FOLLOW:
        from .postgres import repmgr

        return repmgr("standby", "follow", f"--upstream-node-id={args[0]}", check=False).returncode
    elif command in (contract.AGENT_PAUSE, contract.AGENT_RESUME):
        return _pause(command == contract.AGENT_PAUSE)
    elif command == contract.AGENT_POOLER and args[:1] in (["pause"], ["resume"]):
        from . import pooler

        return pooler.pause() if args[0] == "pause" else pooler.resume()
    elif command in ("pg-start", "pg-stop", "pg-restart", "pg-reload", "reload"):
        return _service(command)
    elif command in ("repmgrd-stop", "repmgrd-start"):
        from .supervisor import REPMGRD_HELD

        if command == "repmgrd-stop":
            REPMGRD_HELD.touch()
            signal_named("repmgrd", signal.SIGTERM)
        else:
            REPMGRD_HELD.unlink(missing_ok=True)
    elif command == "install-version":
        from .files import install_version

        install_version(Path(args[0]), Path(args[1]))
    elif command == "install-config":
        from .files import install_config

        install_config(Path(args[0]), Path(args[1]))
    elif command == contract.AGENT_SSHD:
        from .upgrade_sync import serve_ssh

        serve_ssh()
    elif command == contract.AGENT_UPGRADE_PUSH:
        from .upgrade_sync import push

        return push(args)
    elif command == "unfence":
        Path(contract.FORCE_PRIMARY).touch()
        print("this node may now start as primary without reaching a peer; remove "
              f"{contract.FORCE_PRIMARY} once the cluster is whole again")
    else:
        print(f"pgdock-agent: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    return 0


def _pause(pause: bool) -> int:
    """Maintenance mode on this node: the flag first (the promotion gate reads it at once, and the agent
    re-applies repmgr's pause from it), then repmgr's pause; exit 1 when PostgreSQL did not take the latter
    (the running agent applies it once PostgreSQL answers)."""
    from . import postgres

    if pause:
        postgres.PAUSED.touch()
    else:
        postgres.PAUSED.unlink(missing_ok=True)
    if not postgres.running():
        if not pause:  # repmgr's own record would pause repmgrd again when PostgreSQL starts
            postgres.REPMGRD_STATE.unlink(missing_ok=True)
        return 0
    return 0 if postgres.pause_repmgrd(pause) else 1


def _service(command: str) -> int:
    """repmgr's service_*_command and the deploy's reload: PostgreSQL (and repmgrd) on this node."""
    from . import postgres

    if command == "pg-start":
        postgres.start()
    elif command == "pg-stop":
        postgres.stop_held()
    elif command == "pg-restart":
        postgres.stop_held()
        postgres.start()
    elif command == "pg-reload":
        postgres.pg_ctl("reload")
    else:  # after a deploy or a rotation: new secrets where programs read them, then PostgreSQL and repmgrd reread
        from .files import install_secrets

        install_secrets()
        postgres.pg_ctl("reload", capture=True)
        signal_named("repmgrd", signal.SIGHUP)
    return 0


def signal_named(name: str, signum: int) -> None:
    """pkill without procps (the image has none): signal every process whose name is `name`."""
    import os

    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                os.kill(int(comm.parent.name), signum)
        except (OSError, ValueError):
            continue


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("run", [])
    if command in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    try:
        return dispatch(command, args)
    except (subprocess.CalledProcessError, OSError) as exc:
        from .postgres import to_container_log

        detail = getattr(exc, "stderr", None) or ""
        to_container_log(f"{' '.join(argv) or 'run'} failed: {exc} {detail}".strip())
        return 1
    except Exception as exc:  # noqa: BLE001 - psycopg errors and the like: one line in the log, exit 1
        from .postgres import to_container_log

        to_container_log(f"{' '.join(argv) or 'run'} failed: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
