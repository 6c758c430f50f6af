"""The other members of the cluster, and what each of them last said.

The prober asks every peer in parallel, one thread per peer, once a second: a slow
or silent peer (packets dropped: connects hang until their timeout) delays only its
own thread, never the fence timer or the other peers. Each answer is stamped with
the moment its probe was *sent*, so an answer that arrives late proves contact only
as of when it was asked. Only a completed PostgreSQL login and query count; a
refused connection is no answer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from . import contract
from .decide import Answer
from .node import env, password

PROBE_INTERVAL = 1.0
CONNECT_TIMEOUT = 2
"""libpq's minimum: a value of 1 is read as 2."""
STATE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT system_identifier FROM pg_control_system()),
       to_regclass('repmgr.nodes') IS NOT NULL
"""
PRIMARY_SQL = "SELECT node_name FROM repmgr.nodes WHERE type = 'primary' AND active ORDER BY node_id LIMIT 1"
"""Who this peer's copy of repmgr's metadata says is primary (asked only where the metadata exists)."""


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
            f"sslmode=verify-ca sslrootcert={contract.CA_CERT}")


def probe(peer: Peer) -> Answer | None:
    """The peer's role, timeline and database identity, or None when it gave no answer."""
    try:
        with psycopg.connect(conninfo(peer), password=password("repmgr"), autocommit=True) as conn:
            in_recovery, timeline, system_id, ready = conn.execute(STATE_SQL).fetchone()
            named = conn.execute(PRIMARY_SQL).fetchone() if ready else None
    except (psycopg.Error, OSError):
        return None
    return Answer(peer.name, peer.data, primary=not in_recovery, timeline=timeline, system_id=system_id,
                  ready=ready, says_primary=named[0] if named else None)


class Prober:
    """Keeps the latest answer and the last contact time of every peer, fresh to within a second."""

    def __init__(self, members: list[Peer], publish: Callable[[dict[str, float], dict[str, float]], None]) -> None:
        self.members = members
        self.publish = publish
        """Told every contact time and every time a peer answered as primary, after each answer."""
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[float, Answer | None]] = {}
        self.contacts: dict[str, float] = {}
        self.primary_contacts: dict[str, float] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        for peer in self.members:
            threading.Thread(target=self._loop, args=(peer,), name=f"probe-{peer.name}", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self, peer: Peer) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            answer = probe(peer)
            with self.lock:
                self.answers[peer.name] = (sent, answer)
                if answer is not None:
                    self.contacts[peer.name] = sent
                if answer is not None and answer.data and answer.primary:
                    self.primary_contacts[peer.name] = sent
                with contextlib.suppress(OSError):  # unwritten: the promote command waits its full delay
                    self.publish(dict(self.contacts), dict(self.primary_contacts))
            self.stopping.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - sent)))

    def snapshot(self, max_age: float = 3 * PROBE_INTERVAL + CONNECT_TIMEOUT) -> tuple[tuple[Answer, ...],
                                                                                    dict[str, float]]:
        """Answers no older than `max_age` (a peer that stopped answering drops out), and all contact times."""
        now = time.monotonic()
        with self.lock:
            fresh = tuple(a for sent, a in self.answers.values() if a is not None and now - sent <= max_age)
            return fresh, dict(self.contacts)

    def wait_round(self, since: float, timeout: float = CONNECT_TIMEOUT + 2 * PROBE_INTERVAL) -> None:
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
