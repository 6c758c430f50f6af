"""`pgdock-gen upgrade`: a major upgrade in place (PostgreSQL 15 → 17) with pg_upgrade (--link by default;
the spec's upgrade.method may ask for --copy or --clone, which keep the old data directory a working rollback).

The spec names the new major; the running one is read from the nodes. Everything pg_upgrade needs runs in
throwaway containers of the upgrade image (images.build_upgrade: the new base image plus the old server
binaries) on the primary's volumes, never in the node's own container:

- `--check` changes nothing: `pg_upgrade --check` against the live primary, from a container that
  shares the primary's process namespace (so pg_upgrade's probe start of the old server sees the running
  postmaster and refuses, instead of taking a postmaster.pid it cannot see for stale), with free space
  beside PGDATA and the expected write downtime.
- the upgrade: pause failover, wait for the standbys to replay what the primary wrote, stop the primary
  (clean shutdown: writes end here), then the others; initdb the new major beside PGDATA with the options
  every data directory is made with (contract.INITDB_OPTIONS) and `pg_upgrade`. Until here any failure
  rolls back: pg_upgrade's rename of global/pg_control is undone, the new directory deleted, every node
  started on the old major again (still paused). The swap of data → data.old, data.new → data is the point of
  no return. Standbys that replayed the primary's shutdown checkpoint are brought over with pg_upgrade's
  `rsync --hard-links` method over the cluster's sshd (upgrade_sync in the agent; only with --link). Then
  the new cluster starts once on a private socket (extensions updated, the standbys' slots created, the other
  members' repmgr records set inactive, so the primary's quorum counts only itself until each registers
  again), its container and the rsynced standbys' are recreated on the new images, the other standbys and
  the witness are removed with their volumes and recreated (they clone the new primary), statistics rebuilt
  (vacuumdb --analyze-in-stages), failover resumed, and with `backup` in the spec a first base backup of the
  new major taken. The spec must then name a new `backup.server` (checked before anything stops): pg_upgrade
  keeps the WAL positions and the timeline, so the new major's WAL would continue the old one's file names in
  the same archive, and a restore could mix the two.
- `--finish` deletes data.old wherever it is.

Each step is logged on the primary as contract.EVENT_UPGRADE_STEP at the time it was done (recorded once the
primary's container runs again), the end as contract.EVENT_UPGRADE with the write downtime.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import backup, cluster, contract, docker, images, lock, maintenance, ship
from .cluster import NodeStatus, Target
from .errors import PgdockError, UsageError
from .spec import Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]

STEPS = ("images", "pause", "catch-up", "stop", "pg_upgrade", "swap", "standbys", "first-start", "recreate",
         "analyze", "resume", "backup")
"""The upgrade's steps in order; a failure before POINT_OF_NO_RETURN rolls back to the old major."""
POINT_OF_NO_RETURN = "swap"
STATE = contract.STATE
WORK = STATE / "upgrade-work"
"""pg_upgrade's working directory on the data volume: its sockets, and update_extensions.sql for the first
start. Removed by `--finish`."""
FREE_SPACE_FLOOR = 256 * 2**20
"""What --link needs beside PGDATA at least: the new cluster's catalogs, WAL and pg_upgrade's schema dump."""
CATCH_UP_SECONDS = 60
COPY_BYTES_PER_SECOND = 200e6
"""pg_upgrade --copy's rate for the downtime estimate: a cold disk's. bench/upgrade.py measured 1.14 GB copied in
1.4 s more than --link took (page cache warm, 2026-12-07): a guess on the safe side."""


# ---------------------------------------------------------------- pure decisions


def major(version_num: str) -> int:
    """`SHOW server_version_num` (150010) as a major (15)."""
    return int(version_num.strip()) // 10000


def problems(spec: Spec, rows: list[NodeStatus], versions: dict[str, int | None]) -> list[str]:
    """Why the upgrade of the running cluster (`rows`, `versions`: each member's running major, None when it
    did not answer) to the spec's version cannot start; empty when it can."""
    target, supported = spec.pg_version, sorted(images.DEBIAN_SUITES)
    found = []
    if target not in images.DEBIAN_SUITES:
        found.append(f"PostgreSQL {target} is not supported (pgdock builds {', '.join(map(str, supported))})")
    primaries = [r.name for r in rows if r.role == "primary"]
    if len(primaries) != 1:
        found.append(f"one primary is needed, found {len(primaries)}" + (f" ({', '.join(primaries)})" if primaries
                                                                           else ""))
    witness = spec.witness.name if spec.witness else None
    for row in rows:
        if versions.get(row.name) is None:
            found.append(f"{row.name} does not answer: its PostgreSQL version is unknown")
        elif row.role == "standby" and row.upstream is None:
            found.append(f"{row.name} is a standby that is not streaming")
        elif row.role not in ("primary", "standby", "witness") or (row.role == "witness") != (row.name == witness):
            found.append(f"{row.name} is {row.role}: {row.detail}")
    source = versions.get(primaries[0]) if len(primaries) == 1 else None
    if source is not None:
        if source == target:
            found.append(f"the cluster already runs PostgreSQL {target}: nothing to upgrade")
        elif source > target:
            found.append(f"the cluster runs PostgreSQL {source}, newer than the spec's {target}: no downgrades")
        elif source not in images.DEBIAN_SUITES:
            found.append(f"the cluster runs PostgreSQL {source}, which pgdock does not build")
        found += [f"{name} runs PostgreSQL {v}, the primary {source}" for name, v in versions.items()
                  if v is not None and v != source]
    return found


def backup_problem(server: str, old: int, new: int, stored_majors: list[int], has_wal: bool) -> str | None:
    """Whether the spec's backup folder (`server`) can take the new major's base backups and WAL: only when it
    is new, or holds only the new major's backups (an upgrade run again after its backup step)."""
    others = sorted({m for m in stored_majors if m != new})
    if others or (has_wal and not stored_majors):
        what = (f"base backups of PostgreSQL {', '.join(str(m) if m else 'unknown' for m in others)}" if others
                else "archived WAL without a base backup")
        return (f"backup.server {server!r} already holds {what}: give `backup.server` a new name (e.g. "
                f"'{server}-pg{new}') so the WAL of PostgreSQL {old} and {new} never mix in one archive (the old "
                f"backups stay under {server!r} for restores to before the upgrade)")
    return None


def space_problem(free: int, data: int, method: str = "link") -> str | None:
    """Whether the data volume has room for the upgrade beside PGDATA (`data` bytes in it): a copy needs the
    data's size again; link and clone share the data files' blocks (clone until they are written)."""
    needed = FREE_SPACE_FLOOR + (data if method == "copy" else data // 20)
    if free < needed:
        what = "a copy of the data, " if method == "copy" else ""
        return (f"{free // 2**20} MB free beside PGDATA, {needed // 2**20} MB needed ({what}the new cluster's "
                "catalogs and WAL, pg_upgrade's schema dump)")
    return None


def standby_method(method: str, primary_checkpoint: str | None, standby_checkpoint: str | None,
                   tablespaces: int = 0) -> tuple[str, str]:
    """How a standby comes to the new major, with the reason: `rsync` (pg_upgrade's documented rsync
    --hard-links: only the new catalogs travel, the data files are linked to the standby's own copies) when the
    primary's files were linked and the standby's last checkpoint is the primary's shutdown checkpoint (it
    replayed everything the old primary wrote: same files, same sizes); `clone` (a new standby from the
    upgraded primary) otherwise, and with tablespaces (the rsync covers the data directory only)."""
    if method != "link":
        return "clone", f"pg_upgrade --{method} gave the primary new files: rsync would send all of them"
    if tablespaces:
        return "clone", f"the primary has {tablespaces} tablespace(s) outside the data directory"
    if standby_checkpoint is None:
        return "clone", "its control data could not be read"
    if primary_checkpoint != standby_checkpoint:
        return "clone", (f"its last checkpoint {standby_checkpoint} is not the primary's shutdown checkpoint "
                         f"{primary_checkpoint}")
    return "rsync", f"it replayed the primary's shutdown checkpoint {primary_checkpoint}"


def recoverable(step: str) -> bool:
    """A failure in `step` returns the cluster to the old major (before the point of no return)."""
    return STEPS.index(step) < STEPS.index(POINT_OF_NO_RETURN)


def rollback_actions(step: str) -> tuple[str, ...]:
    """What undoing a failure in `step` takes: `restore-data` (pg_upgrade touched the primary's volume: its
    pg_control back, the new directory gone) and `start-nodes` (nodes were stopped). Empty after the point
    of no return: nothing is rolled back there."""
    if not recoverable(step):
        return ()
    done = STEPS.index(step)
    actions = ()
    if done >= STEPS.index("pg_upgrade"):
        actions += ("restore-data",)
    if done >= STEPS.index("stop"):
        actions += ("start-nodes",)
    return actions


def restore_script(state: str = str(STATE)) -> str:
    """Shell that undoes an unfinished `pg_upgrade --link` on a data volume mounted at `state`: pg_upgrade
    renamed global/pg_control to pg_control.old before linking (the old cluster is safe again once renamed
    back, as long as the new cluster never started), and the new directory goes."""
    data = shlex.quote(f"{state}/data")
    return (f"set -e; if [ -f {data}/global/pg_control.old ] && [ ! -f {data}/global/pg_control ]; then "
            f"mv {data}/global/pg_control.old {data}/global/pg_control; fi; "
            f"rm -rf {shlex.quote(state + '/data.new')} {shlex.quote(state + '/upgrade-work')}")


def expected_downtime(check_seconds: float, data: int, method: str = "link") -> float:
    """The write downtime to expect, from how long `pg_upgrade --check` took: the upgrade repeats its checks,
    adds the schema dump and restore (about as long again) and the stop, first start and recreation of the
    primary (about 20 s in the lab on 2 cores); a copy adds the data's size at COPY_BYTES_PER_SECOND."""
    return 2 * check_seconds + 20 + (data / COPY_BYTES_PER_SECOND if method == "copy" else 0)


# ---------------------------------------------------------------- shell run in the upgrade image


def _bin(version: int) -> str:
    return f"/usr/lib/postgresql/{version}/bin"


def _initdb(version: int, directory: str) -> str:
    return f"rm -rf {directory}; {_bin(version)}/initdb -D {directory} {' '.join(contract.INITDB_OPTIONS)} >/dev/null"


def _pg_upgrade(old: int, new: int, method: str, *extra: str) -> str:
    """pg_upgrade from the volume's PGDATA to data.new, its output kept and, on failure, its reasons as the last
    line of stdout (what a failed `docker run` reports: python-on-whales leaves its stderr uncaptured): the end
    of its output and the first errors of its logs (a failed schema restore names the object only there)."""
    options = shlex.quote("-c ssl=off -c archive_mode=off")  # the node's TLS files are not in this container
    return (f"mkdir -p {WORK} && cd {WORK} && {_bin(new)}/pg_upgrade {' '.join(extra)} --{method} -U postgres "
            f"-b {_bin(old)} -B {_bin(new)} -d {contract.PGDATA} -D {contract.UPGRADE_NEW} -o {options} "
            f"-O {options} > {WORK}/pg_upgrade.out 2>&1 || {{ {{ grep -v -e '^$' -e 'Failure, exiting' "
            f"{WORK}/pg_upgrade.out | tail -n 3; grep -rh 'ERROR:' {contract.UPGRADE_NEW}/pg_upgrade_output.d "
            f"2>/dev/null | head -n 2; echo; }} | tr -s ' \\n' ' '; echo; exit 1; }}")


def check_script(old: int, new: int, method: str = "link") -> str:
    new_dir = contract.UPGRADE_NEW
    return (f"set -e; {_initdb(new, str(new_dir))}; status=0; ({_pg_upgrade(old, new, method, '--check')}) "
            "|| status=1; "
            f"rm -rf {new_dir} {WORK}; [ $status = 0 ]; "
            f"echo free=$(df -B1 --output=avail {STATE} | tail -n 1) data=$(du -sb {contract.PGDATA} | cut -f1)")


def upgrade_script(old: int, new: int, method: str = "link") -> str:
    return f"set -e; {_initdb(new, str(contract.UPGRADE_NEW))}; {_pg_upgrade(old, new, method)}"


def checkpoint_script(old: int, state: str = str(STATE)) -> str:
    """The data directory's last checkpoint (a standby's last restartpoint) as the old major records it, and how
    many tablespaces it has: `LSN COUNT`."""
    data = shlex.quote(f"{state}/data")
    return (f"echo \"$({_bin(old)}/pg_controldata -D {data} | sed -n 's/^Latest checkpoint location: *//p') "
            f"$(ls {data}/pg_tblspc | wc -l)\"")


def receive_script(state: str = str(STATE)) -> str:
    """A standby's side before rsync, on its data volume mounted at `state`: its data directory becomes data.old
    (what the primary's data.old is synced to), its replication settings kept aside for the new one."""
    data, old, work = (shlex.quote(f"{state}/{name}") for name in ("data", "data.old", "upgrade-work"))
    return (f"set -e; rm -rf {old} {work}; mkdir -p {work}; cp {data}/postgresql.auto.conf {work}/standby.auto.conf; "
            f"mv {data} {old}")


def received_script(state: str = str(STATE)) -> str:
    """A standby's side after rsync: its data directory (the primary's new one, linked to the standby's own
    files) made a standby again: its replication settings back, standby.signal."""
    data, work = (shlex.quote(f"{state}/{name}") for name in ("data", "upgrade-work"))
    return (f"set -e; cp {work}/standby.auto.conf {data}/postgresql.auto.conf; touch {data}/standby.signal; "
            f"chmod 600 {data}/postgresql.auto.conf {data}/standby.signal")


def swap_script() -> str:
    """The point of no return's first half: the new directory takes PGDATA's place (it includes the node's
    generated config, as the agent writes it), the old major's ALTER SYSTEM settings go along."""
    data, new, old = contract.PGDATA, contract.UPGRADE_NEW, contract.UPGRADE_OLD
    return (f"set -e; cp {data}/postgresql.auto.conf {new}/postgresql.auto.conf; rm -rf {old}; mv {data} {old}; "
            f"mv {new} {data}; echo \"include '{contract.CONFIG / 'postgresql.conf'}'\" > {data}/postgresql.conf; "
            f"chmod 600 {data}/postgresql.conf")


def first_start_sql(primary_id: int, standby_ids: list[int]) -> str:
    """Run once on the new cluster before any member sees it: repmgr's extension updated to the new major's
    build, the standbys' slots (pg_upgrade carries none), and every other member's record inactive: the
    primary's quorum (the agent counts active records) is then itself alone until each member registers
    again (clone, witness register), so it does not fence while they are rebuilt."""
    slots = "".join(f"SELECT pg_create_physical_replication_slot('{contract.replication_slot(i)}');\n"
                    for i in standby_ids)
    return ("ALTER EXTENSION repmgr UPDATE;\n"
            f"UPDATE repmgr.nodes SET active = false WHERE node_id <> {int(primary_id)};\n" + slots)


def first_start_script(new: int, port: int, sql: str) -> str:
    data, bin_dir = contract.PGDATA, _bin(new)
    options = shlex.quote(f"-c listen_addresses='' -c unix_socket_directories={WORK} -c ssl=off "
                          f"-c archive_mode=off -p {port}")
    psql = (f"PGOPTIONS='-c client_min_messages=warning' {bin_dir}/psql -X -q -v ON_ERROR_STOP=1 -h {WORK} "
            f"-p {port} -U postgres")
    return (f"set -e; mkdir -p {WORK}; {bin_dir}/pg_ctl -D {data} -w -t 600 -o {options} -l {WORK}/first-start.log "
            f"start >/dev/null; trap '{bin_dir}/pg_ctl -D {data} -w -m fast stop >/dev/null' EXIT; "
            f"if [ -f {WORK}/update_extensions.sql ]; then {psql} -d postgres -f {WORK}/update_extensions.sql; fi; "
            f"printf '%s' {shlex.quote(sql)} | {psql} -d repmgr; touch {contract.FORCE_PRIMARY}")


# ---------------------------------------------------------------- talking to the lab


@dataclass
class Journal:
    """The steps done, each with its own time, for the primary's event log; progress lines as they happen."""

    progress: Progress
    done: list[tuple[str, str, str]] = field(default_factory=list)

    def step(self, name: str, details: str) -> None:
        self.progress(f"upgrade: {name}: {details}")
        self.done.append((dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), name, details))

    def flush(self, target: Target) -> None:
        """Records the steps not yet recorded in the primary's event log (its container must run)."""
        for moment, name, details in self.done:
            _event(target, contract.EVENT_UPGRADE_STEP, f"{name}: {details}", moment=moment)
        self.done.clear()


def _event(target: Target, event: str, details: str, *, ok: bool = True, moment: str = "") -> None:
    command = [contract.AGENT, contract.AGENT_EVENT, "", event, "1" if ok else "0", moment,
               f"by {lock.operator()}: {details}"]
    docker.call(f"logging {event} on {target.node.name}", target.client.execute, target.container, command)


def query(running: cluster.Running, target: Target, sql: str) -> str:
    """One value from the node, as the superuser over its socket (psql unaligned, tuples only)."""
    from python_on_whales.exceptions import DockerException

    command = cluster.psql_command(running.spec, target, None, "postgres") + ["-Atc", sql]
    try:
        return (target.client.execute(target.container, command, user="postgres") or "").strip()
    except DockerException as exc:
        raise PgdockError(f"psql on {target.node.name} failed: {(exc.stderr or exc.stdout or '').strip()}") from None


def running_versions(running: cluster.Running) -> dict[str, int | None]:
    """Each member's running PostgreSQL major, None when it does not answer."""
    found: dict[str, int | None] = {}
    for target in running.targets():
        try:
            found[target.node.name] = major(query(running, target, "SHOW server_version_num"))
        except (PgdockError, ValueError):
            found[target.node.name] = None
    return found


@dataclass(frozen=True)
class Prepared:
    place: maintenance.Place
    rows: list[NodeStatus]
    primary: str
    old: int
    new: int
    old_images: dict[str, str]
    """Each data node's image now (the old major's base image: its pg_controldata reads the control data)."""
    upgrade_image: str

    @property
    def spec(self) -> Spec:
        """The spec naming the new major (in the lab, with the lab's addresses)."""
        return self.place.running.spec

    @property
    def method(self) -> str:
        """pg_upgrade's transfer mode, the spec's upgrade.method."""
        return self.spec.upgrade_method

    @property
    def lab_flag(self) -> str:
        """What the operator adds to a command for this cluster."""
        return " --lab" if self.place.lab else ""

    def container(self, node: str) -> str:
        return contract.container(self.spec.cluster, node)


def prepare(spec_path: Path, spec: Spec, *, in_lab: bool, mirror: str | None = None,
            progress: Progress = print) -> Prepared:
    """Checks the running cluster (in the lab, rendered for the spec's major; on servers, through each node's
    context), builds the upgrade image and sends it to the primary's engine: nothing is stopped yet."""
    place = maintenance.place(spec_path, spec, in_lab)
    running = place.running
    rows = running.status()
    versions = running_versions(running)
    found = problems(running.spec, rows, versions)
    primary = maintenance.primary_of(rows)
    if primary is not None and (why := _backup_problem(running.spec, place.repo, versions[primary] or 0)):
        found.append(why)
    if found:
        raise UsageError(f"upgrade refused: {'; '.join(found)}")
    assert primary is not None
    old_images = {}
    for node in running.spec.nodes:
        target = running.target(node.name)
        old_images[node.name] = docker.call(f"inspecting {target.container}", target.client.container.inspect,
                                            target.container).config.image
    if not docker.client().image.exists(old_images[primary]):
        raise UsageError(f"the image {primary} runs, {old_images[primary]}, is not on this machine: the upgrade "
                         "image is built from it (build it here from the repo that deployed the cluster)")
    tag = images.build_upgrade(running.spec, place.repo, old_images[primary], mirror=mirror, progress=progress)
    ship.ship(running.target(primary).client, [tag], node=primary, progress=progress)
    return Prepared(place, rows, primary, versions[primary] or 0, running.spec.pg_version, old_images, tag)


def _backup_problem(spec: Spec, repo: Path, old: int) -> str | None:
    """backup_problem for the spec's backup folder, read from S3 with the repo's keys (None without backups)."""
    if spec.backup is None:
        return None
    loc = backup.location(spec)
    s3 = backup.client(loc, backup.credentials(repo / "secrets"))
    return backup_problem(loc.server, old, spec.pg_version, [b.pg_major for b in backup.list_backups(s3, loc)],
                          backup.newest_wal(s3, loc) is not None)


def _volumes(spec: Spec, node: str) -> list[tuple[str, str, str]]:
    """The node's data volume, and its config volume read-only (PGDATA's postgresql.conf includes it)."""
    return [(contract.volume(spec.cluster, node, "data"), str(STATE), "rw"),
            (contract.volume(spec.cluster, node, "config"), str(contract.CONFIG_STORE), "ro")]


def _on_primary_volume(prepared: Prepared, script: str, what: str, *, pid: str | None = None,
                       socket: bool = False) -> str:
    return _on_volume(prepared, prepared.primary, script, what, pid=pid, socket=socket)


def _on_volume(prepared: Prepared, node: str, script: str, what: str, *, pid: str | None = None,
               socket: bool = False) -> str:
    """`script` in a throwaway container on the node's volumes, on its engine (the node is stopped, or `pid`
    shares its processes): its stdout. The primary's runs the upgrade image, the others their own old image."""
    spec = prepared.spec
    volumes = _volumes(spec, node)
    if socket:
        volumes.append((contract.volume(spec.cluster, node, "socket"), str(contract.SOCKET_DIR), "rw"))
    image = prepared.upgrade_image if node == prepared.primary else prepared.old_images[node]
    client = prepared.place.running.target(node).client
    return docker.call(what, client.run, image, ["-c", script], entrypoint="sh", user="postgres", volumes=volumes,
                       remove=True, pid=pid) or ""


def _checkpoints(prepared: Prepared) -> dict[str, tuple[str | None, int]]:
    """Every stopped data node's last checkpoint (None where it could not be read) and tablespace count."""
    found: dict[str, tuple[str | None, int]] = {}
    for node in prepared.place.running.spec.nodes:
        try:
            lsn, count = _on_volume(prepared, node.name, checkpoint_script(prepared.old),
                                    f"reading {node.name}'s control data").split()
            found[node.name] = (lsn, int(count))
        except (PgdockError, ValueError):
            found[node.name] = (None, 0)
    return found


def _rsync_standby(prepared: Prepared, node: str) -> None:
    """One standby to the new major by rsync --hard-links from the primary (upgrade_sync in the agent): its
    sshd alone in a one-off container of its new image at its own address, the primary's rsync in another."""
    place = prepared.place
    _on_volume(prepared, node, receive_script(), f"setting {node}'s old data directory aside")
    receiver = f"{prepared.container(node)}-upgrade-sshd"
    client, pusher = place.running.target(node).client, f"{prepared.container(prepared.primary)}-upgrade-push"
    for one_off, on in ((receiver, client), (pusher, place.running.target(prepared.primary).client)):
        _remove_one_off(on, one_off)  # left by an interrupted run
    docker.call(f"starting {node}'s sshd", place.compose(node).compose.run, contract.NODE_SERVICE,
                [contract.AGENT_SSHD], detach=True, name=receiver, tty=False, dependencies=False)
    try:
        docker.call(f"rsync from {prepared.primary} to {node}", place.compose(prepared.primary).compose.run,
                    contract.NODE_SERVICE, [contract.AGENT_UPGRADE_PUSH, prepared.spec.member(node).address],
                    name=pusher, remove=True, tty=False,
                    dependencies=False)
    finally:
        _remove_one_off(client, receiver)
    _on_volume(prepared, node, received_script(), f"making {node}'s new data directory a standby")


def _remove_one_off(client: DockerClient, name: str) -> None:
    if docker.call(f"looking for {name}", client.container.exists, name):
        docker.call(f"removing {name}", client.container.remove, name, force=True)


def _standbys(prepared: Prepared, checkpoints: dict[str, tuple[str | None, int]], journal: Journal) -> list[str]:
    """Brings each standby over by rsync where standby_method allows it; the ones kept (not to be cloned)."""
    kept = []
    primary, tablespaces = checkpoints.get(prepared.primary, (None, 0))
    for node in (r.name for r in prepared.rows if r.role == "standby"):
        how, why = standby_method(prepared.method, primary, checkpoints.get(node, (None, 0))[0], tablespaces)
        if how == "rsync":
            try:
                began = time.monotonic()
                _rsync_standby(prepared, node)
                kept.append(node)
                journal.step("standbys", f"{node}: rsync --hard-links from {prepared.primary} in "
                             f"{time.monotonic() - began:.1f} s ({why})")
                continue
            except PgdockError as exc:
                why = f"rsync failed: {exc}"
        journal.step("standbys", f"{node}: cloned again from the upgraded primary ({why})")
    return kept


def check(prepared: Prepared, progress: Progress) -> list[str]:
    """`pg_upgrade --check` against the live primary, free space beside PGDATA, the expected write
    downtime: lines to print. Raises when pg_upgrade finds a problem or the space is short."""
    container = prepared.container(prepared.primary)
    progress(f"pg_upgrade --check --{prepared.method} on the live primary {prepared.primary} "
             f"({prepared.old} → {prepared.new})")
    started = time.monotonic()
    out = _on_primary_volume(prepared, check_script(prepared.old, prepared.new, prepared.method),
                             f"pg_upgrade --check on {prepared.primary}", pid=f"container:{container}", socket=True)
    took = time.monotonic() - started
    values = dict(part.split("=", 1) for part in out.split() if "=" in part)
    free, data = int(values["free"]), int(values["data"])
    if why := space_problem(free, data, prepared.method):
        raise PgdockError(f"upgrade check failed on {prepared.primary}: {why}")
    standbys = ("brought over by rsync --hard-links where they caught up, cloned again otherwise"
                if prepared.method == "link" else "cloned again")
    return [f"pg_upgrade --check --{prepared.method}: the clusters are compatible ({took:.1f} s)",
            f"free beside PGDATA on {prepared.primary}: {free // 2**20} MB (data directory {data // 2**20} MB)",
            f"expected write downtime: about {expected_downtime(took, data, prepared.method):.0f} s; the standbys "
            f"are {standbys} after it, the witness is made anew"]


def _stop(prepared: Prepared, node: str) -> None:
    target = prepared.place.running.target(node)
    docker.call(f"stopping {target.container}", target.client.container.stop, target.container, time=120)


def _start(prepared: Prepared, node: str) -> None:
    target = prepared.place.running.target(node)
    docker.call(f"starting {target.container}", target.client.container.start, target.container)


def _catch_up(prepared: Prepared, progress: Progress) -> None:
    """Waits until every standby replayed the primary's WAL position of now (bounded: a standby far behind
    is no reason to keep writes open; it is cloned again anyway)."""
    running = prepared.place.running
    target = running.target(prepared.primary)
    wanted = query(running, target, "SELECT pg_current_wal_lsn()")
    caught_up = f"SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= '{wanted}'::pg_lsn"
    standbys = [r.name for r in prepared.rows if r.role == "standby"]
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while int(query(running, target, caught_up) or "0") < len(standbys):
        if time.monotonic() > deadline:
            raise PgdockError(f"the standbys did not replay the primary's WAL up to {wanted} within "
                              f"{CATCH_UP_SECONDS} s")
        time.sleep(0.5)


def _wait_writable(prepared: Prepared, timeout: float = 300) -> float:
    """Polls the recreated primary until it takes writes (a primary, not in recovery); the moment it does."""
    running = prepared.place.running
    target = running.target(prepared.primary)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if query(running, target, "SELECT pg_is_in_recovery()") == "f":
                return time.monotonic()
        except PgdockError:
            pass
        time.sleep(0.25)
    raise PgdockError(f"{prepared.primary} did not take writes within {timeout:.0f} s after the upgrade; "
                      f"see `docker logs {target.container}`")


def _rollback(prepared: Prepared, step: str, stopped: list[str], journal: Journal, progress: Progress) -> None:
    actions = rollback_actions(step)
    if "restore-data" in actions:
        progress(f"rollback: {prepared.primary}'s data directory back to PostgreSQL {prepared.old}")
        _on_primary_volume(prepared, restore_script(), f"restoring {prepared.primary}'s data directory")
    if "start-nodes" in actions:
        for node in stopped:
            progress(f"rollback: starting {node} on PostgreSQL {prepared.old}")
            _start(prepared, node)
        prepared.place.running.wait_healthy(timeout=300, progress=progress)
    journal.flush(prepared.place.running.target(prepared.primary))


def upgrade(prepared: Prepared, progress: Progress) -> float:
    """The upgrade; returns the write downtime in seconds. Raises PgdockError (one line) on failure, after
    rolling back when the failure came before the point of no return."""
    running = prepared.place.running
    spec = running.spec
    journal = Journal(progress)
    others = [n.name for n in spec.members if n.name != prepared.primary]
    stopped: list[str] = []
    step = "images"
    journal.step(step, f"upgrade image {prepared.upgrade_image}; PostgreSQL {prepared.old} → {prepared.new}")
    try:
        tags = _images(prepared, progress)
        step = "pause"
        maintenance.apply(running, maintenance.prepare(running, pause=True), pause=True, progress=progress)
        journal.step(step, "automatic failover paused on every member")
        step = "catch-up"
        _catch_up(prepared, progress)
        journal.step(step, "every standby replayed the primary's WAL")
        journal.flush(running.target(prepared.primary))
        step = "stop"
        stopped_at = time.monotonic()
        _stop(prepared, prepared.primary)
        stopped.append(prepared.primary)
        journal.step(step, f"{prepared.primary} stopped cleanly: writes end here")
        for node in others:
            _stop(prepared, node)
            stopped.append(node)
        journal.step(step, f"stopped {', '.join(others)}")
        checkpoints = _checkpoints(prepared)
        step = "pg_upgrade"
        began = time.monotonic()
        _on_primary_volume(prepared, upgrade_script(prepared.old, prepared.new, prepared.method),
                           f"pg_upgrade on {prepared.primary}")
        upgrade_seconds = time.monotonic() - began
        journal.step(step, f"pg_upgrade --{prepared.method} {prepared.old} → {prepared.new} took "
                     f"{upgrade_seconds:.1f} s")
    except PgdockError as exc:
        progress(f"upgrade failed at {step}: {exc}")
        try:
            _rollback(prepared, step, stopped, journal, progress)
            _event(running.target(prepared.primary), contract.EVENT_UPGRADE, f"failed at {step}, rolled back to "
                   f"PostgreSQL {prepared.old}: {exc}", ok=False)
        except PgdockError as again:
            raise PgdockError(f"upgrade failed at {step} ({exc}) and the rollback failed too: {again}") from None
        if step == "images":
            raise PgdockError(f"upgrade failed at {step}, nothing changed: {exc}") from None
        raise PgdockError(f"upgrade failed at {step}, rolled back: the cluster runs PostgreSQL {prepared.old} "
                          f"again, still paused (`pgdock-gen resume{prepared.lab_flag}` re-arms failover): {exc}"
                          ) from None
    try:
        step = "swap"
        _on_primary_volume(prepared, swap_script(), f"swapping {prepared.primary}'s data directories")
        rollback = ("usable until the new cluster starts" if prepared.method == "link" else
                    "untouched: a rollback copy until `upgrade --finish`")
        journal.step(step, f"point of no return: PostgreSQL {prepared.old}'s data is in {contract.UPGRADE_OLD} "
                     f"({rollback})")
        step = "standbys"
        kept = _standbys(prepared, checkpoints, journal)
        step = "first-start"
        primary_node = spec.member(prepared.primary)
        sql = first_start_sql(primary_node.id, [n.id for n in spec.nodes if n.name != prepared.primary])
        _on_primary_volume(prepared, first_start_script(prepared.new, primary_node.port, sql),
                           f"first start of PostgreSQL {prepared.new} on {prepared.primary}")
        journal.step(step, "repmgr extension updated, standby slots created, other members set inactive")
        step = "recreate"
        writable_at = _recreate(prepared, tags, others, kept, progress)
        downtime = writable_at - stopped_at
        journal.step(step, f"{prepared.primary} takes writes on PostgreSQL {prepared.new} after {downtime:.1f} s")
        journal.flush(running.target(prepared.primary))
        running.wait_healthy(timeout=600, progress=progress)
        journal.step(step, f"{', '.join(others)} run PostgreSQL {prepared.new}")
        step = "analyze"
        _analyze(prepared)
        journal.step(step, "vacuumdb --all --analyze-in-stages")
        step = "resume"
        target = running.target(prepared.primary)
        docker.call(f"clearing {contract.FORCE_PRIMARY}", target.client.execute, target.container,
                    ["rm", "-f", str(contract.FORCE_PRIMARY)])
        maintenance.apply(running, maintenance.prepare(running, pause=False), pause=False, progress=progress)
        journal.step(step, "automatic failover resumed")
        if spec.backup:
            step = "backup"
            report = backup.run_on_primary(running, progress, prepared.place.repo / "secrets")
            journal.step(step, f"first base backup of PostgreSQL {prepared.new}: {report.splitlines()[-1]}")
        journal.flush(target)
        _event(target, contract.EVENT_UPGRADE, json.dumps(
            {"from": prepared.old, "to": prepared.new, "write_downtime_seconds": round(downtime, 1),
             "pg_upgrade_seconds": round(upgrade_seconds, 1)}))
    except PgdockError as exc:
        if step == "backup":
            raise PgdockError(f"the upgrade is done (PostgreSQL {prepared.new} runs, failover resumed), but its "
                              f"first base backup failed: {exc}; take one with `pgdock-gen backup now`") from None
        raise PgdockError(f"upgrade failed at {step}, past the point of no return: {prepared.primary}'s data "
                          f"directory is PostgreSQL {prepared.new} now ({prepared.old}'s in {contract.UPGRADE_OLD}); "
                          f"fix the cause and finish by hand: {exc}") from None
    return downtime


def _recreate(prepared: Prepared, tags: dict[str, str], others: list[str], kept: list[str],
              progress: Progress) -> float:
    """The primary's container on the new images (config carrier installed anew: the new major's render), then
    the standbys brought over by rsync (`kept`) likewise, then every other member from scratch: volumes removed,
    config and secrets installed, started. Returns the moment the primary took writes (before the others)."""
    place = prepared.place
    rebuilt = [node for node in others if node not in kept]
    for node in rebuilt:
        place.remove(node, remove_volumes=True, progress=progress)
    progress(f"recreating {prepared.container(prepared.primary)} on PostgreSQL {prepared.new}'s images, data kept")
    place.reinstall(prepared.primary, tags[prepared.primary], progress)
    writable_at = _wait_writable(prepared)
    for node in kept:
        progress(f"recreating {prepared.container(node)} on PostgreSQL {prepared.new}'s images, data kept")
        place.reinstall(node, tags[node], progress)
    for node in rebuilt:
        what = "a new witness" if prepared.spec.member(node).witness else "it clones the upgraded primary"
        progress(f"starting {prepared.container(node)} anew: {what}")
        place.reinstall(node, tags[node], progress)
    return writable_at


def _images(prepared: Prepared, progress: Progress) -> dict[str, str]:
    """The new major's base, backup and config images built here and sent to every member's engine (before
    anything stops: the standbys' one-off sshd runs the new base image); each node's config carrier."""
    spec, repo = prepared.spec, prepared.place.repo
    tags = images.build_all(spec, repo, progress=progress)
    for node in spec.members:
        wanted = [tags["base"], tags[node.name]] + ([tags["backup"]] if spec.backup and not node.witness else [])
        ship.ship(prepared.place.running.target(node.name).client, wanted, node=node.name, progress=progress)
    return tags


def _analyze(prepared: Prepared) -> None:
    running = prepared.place.running
    target = running.target(prepared.primary)
    command = ["vacuumdb", "-h", str(contract.SOCKET_DIR), "-p", str(target.node.port), "-U", "postgres", "--all",
               "--analyze-in-stages", "--quiet"]
    docker.call(f"vacuumdb on {prepared.primary}", target.client.execute, target.container, command,
                user="postgres")


def finish(spec_path: Path, spec: Spec, *, in_lab: bool, progress: Progress) -> list[str]:
    """Deletes the old major's data directory (and pg_upgrade's work folder) on every data node that has one."""
    place = maintenance.place(spec_path, spec, in_lab)
    running, notes = place.running, []
    for node in running.spec.nodes:
        target = running.target(node.name)
        # du counts a file linked into both once, with data: data.old's line is what deleting it frees
        script = (f"if [ -d {contract.UPGRADE_OLD} ]; then du -sm {contract.PGDATA} {contract.UPGRADE_OLD} | "
                  "tail -n 1 | cut -f1; "
                  f"rm -rf {contract.UPGRADE_OLD}; fi; rm -rf {WORK}")
        volume = contract.volume(running.spec.cluster, node.name, "data")
        out = docker.call(f"deleting {contract.UPGRADE_OLD} on {node.name}", target.client.run,
                          images.helper_image(target.client, running.spec), ["-c", script], entrypoint="sh",
                          volumes=[(volume, str(STATE))], remove=True) or ""
        notes.append(f"{node.name}: deleted {contract.UPGRADE_OLD} ({out.strip()} MB freed)" if out.strip()
                     else f"{node.name}: no {contract.UPGRADE_OLD}")
    return notes
