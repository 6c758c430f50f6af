"""The other members of the cluster, and what each of them last said.

The prober asks every peer in parallel, one thread per peer, twice a second: a slow or
silent peer (packets dropped: connects hang until their timeout) delays only its own
thread, never the fence timer or the other peers. Each thread keeps one connection open
and asks over it, so a probe costs a query, not a TLS handshake, a scram exchange and a
backend fork (with a login per probe, five nodes probing each other loaded a 2-core
machine enough to delay probes past the fence). Each answer is stamped with the moment
its probe was *sent*, so an answer that arrives late proves contact only as of when it
was asked. Only a completed PostgreSQL login and query count; a refused connection is
no answer, and a query that hangs on an open connection is cut after QUERY_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from . import contract
from .decide import Answer, PeerView
from .node import env, password

PROBE_INTERVAL = 0.5
CONNECT_TIMEOUT = 2
"""libpq's minimum: a value of 1 is read as 2."""
QUERY_TIMEOUT = 2.0
"""A query on an open connection that has not answered by then is cut (a frozen server still acks TCP)."""
STATE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT system_identifier FROM pg_control_system()),
       to_regclass('repmgr.nodes') IS NOT NULL,
       (SELECT extract(epoch FROM clock_timestamp() - last_msg_receipt_time)::float8 FROM pg_stat_wal_receiver)
"""
REPMGR_SQL = """
SELECT (SELECT node_name FROM repmgr.nodes WHERE type = 'primary' AND active ORDER BY node_id LIMIT 1),
       repmgr.get_upstream_last_seen()
"""
"""Asked only where repmgr's metadata exists: who this peer's copy of it names as primary, and how many
seconds ago its repmgrd last saw its upstream (-1: never; a primary's own repmgrd has no upstream)."""


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    port: int
    ssh_port: int
    data: bool


def peers() -> list[Peer]:
    """Other members from the env file (name=address:port:ssh_port,...)."""
    data_nodes = set(env(contract.ENV_DATA_NODES).split(","))
    out = []
    for item in filter(None, env(contract.ENV_PEERS, "").split(",")):
        name, _, rest = item.partition("=")
        address, port, ssh_port = rest.rsplit(":", 2)
        out.append(Peer(name, address, int(port), int(ssh_port), name in data_nodes))
    return out


def conninfo(peer: Peer) -> str:
    """repmgr's way in to a peer: TLS with the cluster CA, and TCP timeouts that notice a vanished peer."""
    return (f"host={peer.address} port={peer.port} user=repmgr dbname=repmgr connect_timeout={CONNECT_TIMEOUT} "
            f"keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2 tcp_user_timeout=2000 "
            f"sslmode=verify-full sslrootcert={contract.CA_CERT}")


def connect(peer: Peer) -> psycopg.Connection:
    return psycopg.connect(conninfo(peer), password=password("repmgr"), autocommit=True,
                           application_name="pgdock-prober")


def ask(conn: psycopg.Connection, peer: Peer) -> Answer:
    """One probe over an open connection; raises psycopg.Error or OSError when the peer does not answer."""
    in_recovery, timeline, system_id, ready, wal_age = conn.execute(STATE_SQL).fetchone()
    named, last_seen = conn.execute(REPMGR_SQL).fetchone() if ready else (None, -1)
    sightings = [age for age in (wal_age, last_seen if in_recovery or not peer.data else -1)
                 if age is not None and age >= 0]
    return Answer(peer.name, peer.data, primary=not in_recovery, timeline=timeline, system_id=system_id,
                  ready=ready, says_primary=named, saw_primary_ago=min(sightings, default=None))


NOT_READY = ("the database system is starting up", "the database system is shutting down",
             "the database system is not yet accepting connections", "the database system is in recovery mode")
"""What a peer's postmaster says while its PostgreSQL starts or stops (SQLSTATE 57P03)."""


def reachable_but_not_ready(exc: BaseException) -> bool:
    """The peer's own postmaster answered (after the TLS handshake that proves it is that peer), but its
    PostgreSQL is starting or stopping: no answer about its role, yet proof that it is on this side of any
    partition. Standbys restart to follow a new primary; counted as silent, they made it fence itself."""
    return isinstance(exc, psycopg.OperationalError) and any(text in str(exc) for text in NOT_READY)


def _cut(conn: psycopg.Connection) -> None:
    """Ends a hung query from another thread: shutting the socket down wakes the waiting thread with an error."""
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        with sock:
            sock.shutdown(socket.SHUT_RDWR)


class Prober:
    """Keeps the latest answer and the last contact time of every peer, fresh to within a second."""

    def __init__(self, members: list[Peer], publish: Callable[[dict[str, PeerView]], None]) -> None:
        self.members = members
        self.publish = publish
        """Told what is known of every peer after each probe (the promotion gate reads it)."""
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[float, Answer | None]] = {}
        self.views: dict[str, PeerView] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        for peer in self.members:
            threading.Thread(target=self._loop, args=(peer,), name=f"probe-{peer.name}", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self, peer: Peer) -> None:
        conn: psycopg.Connection | None = None
        while not self.stopping.is_set():
            sent = time.monotonic()
            answer, alive = None, False
            try:
                conn = conn if conn is not None and not conn.closed else connect(peer)
                timer = threading.Timer(QUERY_TIMEOUT, _cut, (conn,))
                timer.start()
                try:
                    answer = ask(conn, peer)
                finally:
                    timer.cancel()
            except (psycopg.Error, OSError) as exc:
                alive = reachable_but_not_ready(exc)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        conn.close()
                conn = None
            self._record(peer, sent, answer, alive)
            self.stopping.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - sent)))
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()

    def _record(self, peer: Peer, sent: float, answer: Answer | None, alive: bool = False) -> None:
        with self.lock:
            self.answers[peer.name] = (sent, answer)
            self.views[peer.name] = PeerView.after(self.views.get(peer.name), peer.name, sent, answer, alive=alive)
            with contextlib.suppress(OSError):  # unwritten: the promotion gate waits for a fresher file
                self.publish(dict(self.views))

    def snapshot(self, max_age: float = 3 * PROBE_INTERVAL + CONNECT_TIMEOUT) -> tuple[tuple[Answer, ...],
                                                                                    dict[str, float]]:
        """Answers no older than `max_age` (a peer that stopped answering drops out), and all contact times."""
        now = time.monotonic()
        with self.lock:
            fresh = tuple(a for sent, a in self.answers.values() if a is not None and now - sent <= max_age)
            return fresh, {name: v.contact for name, v in self.views.items() if v.contact is not None}

    def wait_round(self, since: float, timeout: float = CONNECT_TIMEOUT + QUERY_TIMEOUT + PROBE_INTERVAL) -> None:
        """Blocks until every peer was asked after `since` (or `timeout`): a start decision needs fresh answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            with self.lock:
                if all(self.answers.get(p.name, (0.0, None))[0] >= since for p in self.members):
                    return
            time.sleep(0.05)

    def primary(self) -> tuple[Peer, Answer] | None:
        """The registered data peer that answers as primary (the newest timeline, should there be several)."""
        answers, _ = self.snapshot()
        primaries = sorted((a for a in answers if a.data and a.primary and a.ready), key=lambda a: -a.timeline)
        if not primaries:
            return None
        return next(p for p in self.members if p.name == primaries[0].name), primaries[0]
