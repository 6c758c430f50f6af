"""`pgdock-gen drill`: a failure rehearsed on the lab cluster under a write load, and what it cost.

A writer commits numbered rows to whichever node accepts writes and remembers
every acknowledged commit; a sampler asks each data node, from inside its
container, whether it accepts writes. After the fault and the recovery, the
report says how long writes failed, how many acknowledged commits are missing,
whether two nodes ever accepted writes at once, and where the time went: the
phases come from the nodes' own events (detection, election, promotion, first
write; for isolate-primary also when the old primary fenced itself).

The writer reconnects to every data node at once and keeps the first that takes
writes, as a client behind a health-checked proxy would: it measures when the
cluster takes writes again. A libpq multi-host URI tries hosts in order and adds
its connect_timeout for each dead host listed before the new primary.
"""

from __future__ import annotations

import select
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psycopg

from . import cluster, contract, docker, events, lab, switchover
from .errors import PgdockError, UsageError
from .spec import Node, Spec

SCENARIOS = ("kill-primary", "isolate-primary", "kill-standby", "restart-all", "switchover")
TABLE = "pgdock_drill"
Progress = Callable[[str], None]


@dataclass
class Ack:
    id: int
    at: float
    server: str


class WriteLoad:
    """Commits one numbered row at a time into `table`; reconnects after every failure. It connects to the
    first node that takes writes, asking all at once, or, given `uri`, through that URI as an application
    would (the lab's HAProxy, `pgdock-gen dsn`'s multi-host URI)."""

    def __init__(self, spec: Spec, password: str, ca_file: str, pause: float = 0.02, *, uri: str | None = None,
                 table: str = TABLE):
        def conninfo(hosts: list[Node]) -> str:
            return psycopg.conninfo.make_conninfo(
                host=",".join(n.address for n in hosts), port=",".join(str(n.port) for n in hosts),
                dbname=spec.database, user=spec.user, password=password, sslmode="verify-full", sslrootcert=ca_file,
                target_session_attrs="read-write", connect_timeout=2,
                # a primary that vanishes mid-query must not hang the writer: TCP keepalives notice in ~4 s
                keepalives_idle=2, keepalives_interval=1, keepalives_count=2, tcp_user_timeout=4000)

        self.uri = uri
        self.conninfo = conninfo(list(spec.nodes)) if uri is None else psycopg.conninfo.make_conninfo(
            uri, password=password)
        self.per_node = [conninfo([node]) for node in spec.nodes]
        self.pool = ThreadPoolExecutor(4 * len(self.per_node))  # room for attempts still hanging on a dead host
        self.pause = pause
        self.table = table
        self.acks: list[Ack] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next = 0

    def prepare(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id bigint PRIMARY KEY, at timestamptz)")
            self._next = conn.execute(f"SELECT coalesce(max(id), 0) FROM {self.table}").fetchone()[0]

    def _connect(self) -> psycopg.Connection:
        """The first node that accepts a read-write session, all asked at once; the others are closed."""
        if self.uri is not None:
            return psycopg.connect(self.conninfo, autocommit=True)
        pending = {self.pool.submit(psycopg.connect, info, autocommit=True) for info in self.per_node}
        winner = None
        deadline = time.monotonic() + 1.0  # a dead host hangs to its connect_timeout: do not wait for it
        while pending and winner is None and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=deadline - time.monotonic(), return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is None and winner is None:
                    winner = future.result()
                elif future.exception() is None:
                    future.result().close()
        for future in pending:
            future.add_done_callback(lambda f: f.exception() is None and f.result().close())
        if winner is None:
            raise psycopg.OperationalError("no node accepts writes")
        return winner

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                self._next += 1
                server = conn.execute(f"INSERT INTO {self.table} VALUES (%s, now()) "
                                      "RETURNING host(inet_server_addr())", (self._next,)).fetchone()[0]
                self.acks.append(Ack(self._next, time.monotonic(), server))
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.1)
                continue
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def start(self) -> None:
        self.prepare()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.pool.shutdown(wait=False)

    def lost(self) -> list[int]:
        """Acknowledged ids missing from the table on today's primary."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            present = {row[0] for row in conn.execute(f"SELECT id FROM {self.table}")}
        return sorted(a.id for a in self.acks if a.id not in present)


class _Session:
    """One long-lived psql inside a node's container, asked again and again. A `docker exec` per sample
    (five nodes, three times a second) loaded a 2-core machine enough to delay the cluster's own probes."""

    QUESTION = b"SELECT NOT pg_is_in_recovery();\n"
    TIMEOUT = 3.0

    def __init__(self, target: cluster.Target):
        self.target = target
        self.proc: subprocess.Popen | None = None

    def writable(self) -> bool:
        """True when the node answered that it takes writes; False when it said no or did not answer."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = docker.exec_pipe(self.target.context, self.target.container,
                                             ["psql", "-XAtq", "-h", "/var/run/postgresql", "-p",
                                              str(self.target.node.port), "-U", "postgres"], "postgres")
            self.proc.stdin.write(self.QUESTION)
            ready, _, _ = select.select([self.proc.stdout], [], [], self.TIMEOUT)
            line = self.proc.stdout.readline() if ready else b""
        except (OSError, ValueError):
            line = b""
        if not line:  # psql ended (the server went away) or hangs: start a new one next time
            self.close()
        return line.strip() == b"t"

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class WritableSampler:
    """Every ~0.3 s asks each data node, over its own long-lived psql, whether it accepts writes right now."""

    def __init__(self, running: cluster.Running):
        self.targets = [t for t in running.targets() if not t.node.witness]
        self.sessions = [_Session(t) for t in self.targets]
        self.samples: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with ThreadPoolExecutor(len(self.targets)) as pool:
            while not self._stop.is_set():
                at = time.monotonic()
                flags = list(pool.map(_Session.writable, self.sessions))
                self.samples.append((at, frozenset(t.node.name for t, f in zip(self.targets, flags, strict=True)
                                                   if f)))
                self._stop.wait(0.3)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for session in self.sessions:
            session.close()

    def max_writable(self) -> int:
        return max((len(s) for _, s in self.samples), default=0)


@dataclass
class Report:
    scenario: str
    partition: str
    """How isolate-primary cut the primary off (drop, reject, disconnect); `-` for the other scenarios."""
    old_primary: str
    new_primary: str
    writes_resumed_after_s: float | None
    longest_write_gap_s: float
    acked_commits: int
    lost_commits: int
    max_writable_primaries: int
    recovered_after_s: float
    rejoined_by: str
    phases: dict[str, float | None]
    """Seconds after the fault: detection (a standby or the witness lost the primary; repmgr stamps it to
    the second), election (repmgrd chose the new primary), promotion (it took writes), first_write (the
    writer's first commit there), fenced (the old primary stopped itself, isolate-primary only)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _wait_new_primary(running: cluster.Running, old: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        primaries = [r.name for r in running.status() if r.role == "primary" and r.name != old]
        if primaries:
            return primaries[0]
        time.sleep(0.5)
    raise PgdockError(f"no standby was promoted within {timeout:.0f} s after the primary {old} failed")


def _phases(running: cluster.Running, old: str, new: str, fault_at: datetime,
            first_write: float | None) -> dict[str, float | None]:
    """Where the failover's time went, from the nodes' own events after the fault."""
    since = fault_at.isoformat()
    seen = [e for e in events.collect(running) if e.get("time") and e["time"] >= since]

    def after(event: str, node: str | None = None) -> float | None:
        found = next((e for e in seen if e["event"] == event and node in (None, e["node"])), None)
        return None if found is None else round(
            (datetime.fromisoformat(found["time"]) - fault_at).total_seconds(), 2)

    promoted = new != old
    return {"detection": after(contract.EVENT_UPSTREAM_DISCONNECT) if promoted else None,
            "election": after(contract.EVENT_PROMOTE_WAIT, new) if promoted else None,
            "promotion": after(contract.EVENT_STANDBY_PROMOTE, new) if promoted else None,
            "first_write": first_write, "fenced": after(contract.EVENT_FENCED, old)}


def _rejoin_method(running: cluster.Running, node: str, since_iso: str) -> str:
    """How `node` came back after the fault, from the agent's own events: clone, pg_rewind or a plain resume."""
    mine = [e["event"] for e in events.collect(running) if e["node"] == node and e["time"] >= since_iso]
    if contract.EVENT_CLONE in mine:
        return "clone"
    if contract.EVENT_REJOIN in mine:
        return "pg_rewind"
    return "resume"


def _inject(scenario: str, lab_: lab.Lab, old: str, partition: str,
            progress: Progress) -> tuple[str, str | None]:
    """Causes the fault; returns (new primary, node to check for its rejoin method)."""
    spec, running = lab_.lab_spec, lab_.running
    if scenario == "kill-primary":
        lab.container_action(lab_.spec, old, "kill")
        new = _wait_new_primary(running, old, 90)
        progress(f"{new} promoted; starting {old} again")
        lab.container_action(lab_.spec, old, "start")
        return new, old
    if scenario == "isolate-primary":
        progress(f"isolating {old} (partition: {partition})")
        lab.container_action(lab_.spec, old, "isolate", partition)
        try:
            new = _wait_new_primary(running, old, 90)
        except PgdockError:
            lab.container_action(lab_.spec, old, "heal")  # never leave the lab cut off
            raise
        progress(f"{new} promoted; healing {old}")
        time.sleep(3)
        lab.container_action(lab_.spec, old, "heal")
        return new, old
    if scenario == "kill-standby":
        standby = next(n.name for n in spec.nodes if n.name != old)
        lab.container_action(lab_.spec, standby, "kill")
        time.sleep(5)
        lab.container_action(lab_.spec, standby, "start")
        return old, standby
    if scenario == "restart-all":
        for node in reversed(spec.members):
            lab.container_action(lab_.spec, node.name, "stop")
        for node in spec.members:
            lab.container_action(lab_.spec, node.name, "start")
        return old, None
    if scenario == "switchover":
        rows = running.status()
        candidates = [r for r in rows if switchover.check(spec, r.name, rows) is None]
        if not candidates:
            raise PgdockError("no standby can take over right now; see `pgdock-gen status --lab`")
        best = max(candidates, key=lambda r: spec.member(r.name).priority)
        switchover.switchover(running, best.name, force=False, progress=progress)
        return best.name, old
    raise PgdockError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


def run(lab_: lab.Lab, scenario: str, *, partition: str = "drop", progress: Progress = print,
        settle_timeout: float = 180) -> Report:
    """Runs one scenario on a healthy lab cluster and reports; the cluster ends healthy or this raises.

    `partition` is how isolate-primary cuts the primary off (see `lab.container_action`): `drop` by
    default, where packets vanish and connects hang as in a real network failure.
    """
    if partition not in lab.PARTITIONS:
        raise UsageError(f"unknown partition mode {partition!r}; choose one of {', '.join(lab.PARTITIONS)}")
    spec, running = lab_.lab_spec, lab_.running
    rows = running.wait_healthy(timeout=60, progress=progress)
    old = next(r.name for r in rows if r.role == "primary")
    secrets = lab_.repo / "secrets"
    load = WriteLoad(spec, (secrets / "passwords" / "app").read_text().strip(), str(secrets / "tls" / "ca.crt"))
    sampler = WritableSampler(running)
    load.start()
    sampler.start()
    time.sleep(2)
    progress(f"{scenario}: primary is {old}; writing {len(load.acks)} rows so far")
    fault_at = time.monotonic()
    fault_wall = datetime.now(UTC)
    since_iso = fault_wall.isoformat(timespec="milliseconds")
    try:
        new, rejoiner = _inject(scenario, lab_, old, partition, progress)
        running.wait_healthy(timeout=settle_timeout, progress=progress)
        recovered = time.monotonic() - fault_at
        time.sleep(2)
    finally:
        load.stop()
        sampler.stop()
    new_address = spec.member(new).address
    after = [a for a in load.acks if a.at > fault_at]
    resumed = next((a.at - fault_at for a in after if a.server == new_address), None) if new != old else None
    stamps = [fault_at] + [a.at for a in after]
    gap = max((b - a for a, b in zip(stamps, stamps[1:], strict=False)), default=0.0)
    return Report(scenario=scenario, partition=partition if scenario == "isolate-primary" else "-",
                  old_primary=old, new_primary=new,
                  writes_resumed_after_s=None if resumed is None else round(resumed, 2),
                  longest_write_gap_s=round(gap, 2), acked_commits=len(load.acks), lost_commits=len(load.lost()),
                  max_writable_primaries=sampler.max_writable(), recovered_after_s=round(recovered, 2),
                  rejoined_by=_rejoin_method(running, rejoiner, since_iso) if rejoiner else "-",
                  phases=_phases(running, old, new, fault_wall, None if resumed is None else round(resumed, 2)))
