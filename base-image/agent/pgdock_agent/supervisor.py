"""The container's main loop: observe, decide, apply — four times a second.

Observing reads files, the postmaster's pid and the prober's latest answers (never a network
wait: the prober's threads do those), so a running primary's fence deadline is checked on
time however slowly peers answer. Deciding is `decide.next_action`. Applying runs pg_ctl,
repmgr and the bootstrap steps; a step that fails is logged and retried, never fatal (if the
supervisor died, PostgreSQL would die with it). For fence and step-down the order is: stop
PostgreSQL first, then the status line and the log, then the event and its detached hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from . import api, archive, bootstrap, contract, decide, events, pooler, postgres, priority, promote, restore_wal
from .decide import Act, Action
from .files import install_secrets
from .node import RUN, env, log, set_status, sshd_command
from .peers import Prober, peers
from .rejoin import primary_node_id, rejoin
from .status import expected_registration, monitoring, registration, repmgrd_running

TICK = 0.25
RETRY_SECONDS = 5.0
"""Pause after a failed step on a node that is not a running primary (a failing clone, say)."""
MEMBERS_REFRESH = 5.0
HOLD_DOWN_SLACK = 6.0
"""A fenced primary stays down the promotion delay plus this: the gate of an election held meanwhile
must have seen a fresh probe of it (sent after the election began) before the node may start again, so
that an election still deciding never misses a former primary that came back."""
REPMGRD_RESTART_SECONDS = 5.0
"""repmgrd that exits at once (a wrong record, say) is restarted no faster than this."""
SLOT_CHECK_SECONDS = 10.0
"""How often a running primary looks for replication slots PostgreSQL gave up (max_slot_wal_keep_size)."""
REPMGRD_HELD = RUN / "repmgrd.held"
REFUSED = RUN / "refused"
"""Why this node refuses to start (it stays down, PG_HELD, until an operator rebuilds or restarts it)."""
PAUSE_CHECK_SECONDS = 5.0
"""How often a paused node (contract.PAUSED) checks that repmgrd is still paused (a restart or a clone, or a
switchover's `--repmgrd-force-unpause`, loses or lifts repmgr's own pause)."""
REINIT = Path(contract.REINIT)
REGISTRATION_CHECK_SECONDS = 30.0
"""How often a registered node reads its repmgr record again: a standby a major upgrade brought over by rsync
starts on a copy of the catalog that still calls it active, and replays its record's deactivation later."""
PRIORITY_CHECK_SECONDS = 2.0
"""How often a standby checks that its election priority matches its repmgrd's state (decide.election_priority):
a repmgrd that stopped monitoring is out of the election within this, plus a write on the primary."""
PRIORITY_REWRITE_SECONDS = 30.0
"""A priority written on the primary is written again only after this if the local copy still disagrees."""


class StopRequested(Exception):
    """SIGTERM arrived during a long step (a clone, waiting for a restore)."""


class Supervisor:
    def __init__(self) -> None:
        self.peers = peers()
        self.prober = Prober(self.peers, promote.publish)
        self.started = time.monotonic()
        self.baseline = self.started
        """Since when a member never heard from counts as silent: start, or the last time members joined."""
        self.fence_after = float(env(contract.ENV_FENCE_SECONDS, "3"))
        self.stopping = threading.Event()
        self.busy = False
        self.sshd: subprocess.Popen | None = None
        self.repmgrd: subprocess.Popen | None = None
        self.repmgrd_started = -REPMGRD_RESTART_SECONDS
        self.previous: Action | None = None
        self.members: tuple[float, int | None] = (0.0, None)
        self.system_id: int | None = None
        self.is_registered = False
        self.registration_checked = 0.0
        self.fenced_at: float | None = None
        self.slots_checked = 0.0
        self.pause_checked = 0.0
        self.priority_checked = 0.0
        self.priority_written: tuple[int | None, float] = (None, 0.0)
        """The last priority this standby wrote on the primary, and when (one write until its copy shows it)."""
        self.upstream_seen: tuple[object, float] = (None, self.started)
        """The standby's upstream and the members answering as primary, and since when (decide.Facts.upstream_since)."""
        self.rejoin_failures = 0
        """Failed rejoins in a row (decide.after_failed_rejoin tries REJOIN_TRIES times before refusing)."""
        self.lost_slots: set[str] = set()
        """Slots already reported lost (one event each)."""
        self.hold_down = float(env(contract.ENV_PROMOTE_SECONDS, "5")) + HOLD_DOWN_SLACK
        settings = pooler.Settings.from_env()
        self.pooler = pooler.Pooler(settings) if settings else None
        self.handlers = {
            Act.START_PRIMARY: self._start, Act.START_STANDBY: self._start, Act.START_WITNESS: self._start,
            Act.REFUSE: self._apply_refuse, Act.BOOTSTRAP_PRIMARY: self._apply_bootstrap_primary,
            Act.BOOTSTRAP_WITNESS: self._apply_bootstrap_witness, Act.CLONE: self._apply_clone,
            Act.RESTORE: self._apply_restore, Act.REDO_BOOTSTRAP: self._apply_redo_bootstrap,
            Act.REJOIN: self._apply_rejoin, Act.FOLLOW: self._apply_follow,
        }
        """What applies each action beyond stopping PostgreSQL and showing the reason (KEEP, WAIT: nothing)."""

    # ------------------------------------------------------------ observe

    def observe(self) -> decide.Facts:
        answers, contacts = self.prober.snapshot()
        has_data, running, standby = postgres.has_data(), postgres.running(), postgres.is_standby()
        timeline = None
        if has_data and self.system_id is None:
            self.system_id, _ = postgres.stored_identity()
        if has_data and not running:
            _, timeline = postgres.stored_identity()
        elif running and not standby and any(a.data and a.primary for a in answers):
            timeline = postgres.timeline()
        upstream = self.upstream_name() if running and standby else None
        seen = (upstream, tuple(sorted(a.name for a in answers if a.data and a.primary)))
        if seen != self.upstream_seen[0]:
            self.upstream_seen = (seen, time.monotonic())
        return decide.Facts(
            role=env(contract.ENV_ROLE), name=env(contract.ENV_NODE), members=self.member_count(running, standby),
            has_data=has_data, bootstrapping=bootstrap.BOOTSTRAPPING.exists(), standby=standby, running=running,
            held=postgres.PG_HELD.exists(), refused=REFUSED.read_text() if REFUSED.exists() else None,
            force_primary=os.path.exists(contract.FORCE_PRIMARY),
            restore=bool(os.environ.get(contract.ENV_RESTORE_SERVER)), timeline=timeline,
            system_id=self.system_id, answers=answers, contacts=contacts, now=time.monotonic(),
            started=self.baseline, fence_after=self.fence_after, fenced_at=self.fenced_at, hold_down=self.hold_down,
            reinit=REINIT.exists(), upstream=upstream, upstream_since=self.upstream_seen[1])

    def upstream_name(self) -> str | None:
        """The member this standby's primary_conninfo names (repmgr writes the member's address there)."""
        host = postgres.upstream_host()
        return next((p.name for p in self.peers if p.address == host), None)

    def member_count(self, running: bool, standby: bool) -> int:
        """What repmgr's election counts: its registered nodes, read from the running primary; else every
        configured member (more members only make a fence come sooner)."""
        configured = len(self.peers) + 1
        if not running or standby:
            return configured
        read_at, count = self.members
        if time.monotonic() - read_at >= MEMBERS_REFRESH:
            fresh = postgres.registered_members()
            if fresh is not None and fresh > (count or 0):
                self.baseline = time.monotonic()  # a node that just registered gets a fence_after to be heard
            count = fresh
            self.members = (time.monotonic(), count)
        return count or configured

    def stops_postgres(self) -> bool:
        """Whether the last decision takes PostgreSQL down (fence, step down, refuse): the health API's /primary
        answers 503 from that moment, before PostgreSQL has stopped. Read from the API's thread: one attribute
        read, no lock needed."""
        previous = self.previous
        return previous is not None and previous.act in (Act.FENCE, Act.STEP_DOWN, Act.REFUSE)

    # ------------------------------------------------------------ apply

    def apply(self, action: Action) -> None:
        fresh = self.previous is None or (action.act, action.peer) != (self.previous.act, self.previous.peer)
        came_back = self.previous is not None and self.previous.act == Act.FENCE and fresh
        self.previous = action
        decided_at = events.event_time()
        if action.act == Act.FENCE and self.fenced_at is None and postgres.running():
            self.fenced_at = time.monotonic()
        if action.act in (Act.START_PRIMARY, Act.START_STANDBY, Act.REJOIN):
            self.fenced_at = None
        if action.act in (Act.FENCE, Act.STEP_DOWN, Act.REFUSE):
            # First: a fast stop ends every session at once; pg_ctl returns only after the shutdown
            # checkpoint and the walsenders (which may wait on unreachable standbys), so the event
            # carries the moment the stop began, when writes ended.
            postgres.stop()
        set_status(action.reason)
        if fresh and action.event:
            events.record(action.event, action.reason, timestamp=decided_at)
        if came_back:
            events.record(contract.EVENT_UNFENCED, action.reason)
        handler = self.handlers.get(action.act)
        if handler:
            handler(action)

    def _peer(self, name: str | None):
        return next(p for p in self.peers if p.name == name)

    def _start(self, action: Action) -> None:
        postgres.write_pgdata_conf()
        postgres.start()
        self.is_registered = False

    def _apply_refuse(self, action: Action) -> None:
        postgres.PG_HELD.touch()
        REFUSED.write_text(action.reason)

    def _apply_bootstrap_primary(self, action: Action) -> None:
        bootstrap.primary()
        self.system_id = None

    def _apply_bootstrap_witness(self, action: Action) -> None:
        bootstrap.witness()
        REINIT.unlink(missing_ok=True)

    def _apply_clone(self, action: Action) -> None:
        bootstrap.clone(self._peer(action.peer))
        self.system_id = None
        REINIT.unlink(missing_ok=True)

    def _apply_restore(self, action: Action) -> None:
        bootstrap.restore(env(contract.ENV_RESTORE_SERVER), env(contract.ENV_RESTORE_TARGET, "latest"))
        self.system_id = None

    def _apply_redo_bootstrap(self, action: Action) -> None:
        bootstrap.redo()
        self.system_id = None

    def _apply_rejoin(self, action: Action) -> None:
        peer = self._peer(action.peer)
        answer = next((a for a in self.prober.snapshot()[0] if a.name == peer.name), None)
        timeline = answer.timeline if answer else 0
        if rejoin(peer, timeline):
            self.is_registered = False
            self.rejoin_failures = 0
            return
        self.rejoin_failures += 1
        self.stopping.wait(RETRY_SECONDS)  # PostgreSQL is down here: pausing delays nothing but the next try
        self.apply(decide.after_failed_rejoin(peer.name, timeline, postgres.stored_identity()[1],
                                              self.rejoin_failures))

    def _apply_follow(self, action: Action) -> None:
        """`repmgr standby follow` of the primary; tried again no sooner than decide.FOLLOW_GRACE (a standby
        that cannot follow, its WAL ahead of the new primary's timeline, shows why in its log and needs
        `pgdock-gen reinit`)."""
        self.upstream_seen = (None, time.monotonic())
        upstream_id = postgres.node_id(action.peer or "")
        result = postgres.repmgr("standby", "follow", f"--upstream-node-id={upstream_id}", check=False) \
            if upstream_id is not None else None
        if result is not None and result.returncode == 0:
            events.record(contract.EVENT_FOLLOW, action.reason)
            return
        why = "its id is not in repmgr's metadata" if result is None else f"repmgr exit {result.returncode}"
        events.record(contract.EVENT_FOLLOW, f"{action.reason}: failed ({why}); trying again in "
                      f"{decide.FOLLOW_GRACE:g} s", success=False)

    # ------------------------------------------------------------ the processes around PostgreSQL

    def ensure_registered(self) -> None:
        """Makes repmgr's record of this node say what it is; repmgrd starts only then. A restored copy or a
        new witness has no record yet; a rejoin whose metadata update failed (the primary was restarting)
        leaves a standby recorded as primary, without its slot: `standby follow` rewrites both."""
        if not postgres.running() or bootstrap.BOOTSTRAPPING.exists() or (
                self.is_registered and time.monotonic() - self.registration_checked < REGISTRATION_CHECK_SECONDS):
            return
        record = registration()
        if record is None:
            return  # PostgreSQL did not answer: try again on the next tick
        self.registration_checked = time.monotonic()
        expected = expected_registration()
        step = decide.registration_step(*record, expected, recheck=self.is_registered)
        if step is None:
            self.is_registered = True
            return
        self.is_registered = False
        if step == "primary-register":
            postgres.repmgr("primary", "register", "--force")
            return
        found = self.prober.primary()
        if found is None:
            set_status(f"waiting for a primary to register this {expected} with")
            return
        if step == "witness-register":
            bootstrap.register_witness(found[0])
            return
        upstream = primary_node_id(found[0])
        if upstream is not None:
            action = ("standby", "follow") if step == "standby-follow" else ("standby", "register", "--force")
            postgres.repmgr(*action, f"--upstream-node-id={upstream}", check=False)

    def keep_paused(self) -> None:
        """In maintenance mode (contract.PAUSED) repmgrd stays paused here: a new clone, a container restart
        after a resume that could not reach repmgr, or a switchover's unpause would otherwise re-arm it."""
        if not postgres.PAUSED.exists() or time.monotonic() - self.pause_checked < PAUSE_CHECK_SECONDS \
                or not postgres.running():
            return
        self.pause_checked = time.monotonic()
        if postgres.repmgrd_paused() is False:
            postgres.pause_repmgrd(True)
            log("maintenance mode: repmgrd paused again on this node")

    def keep_priority(self) -> None:
        """A registered standby's repmgr record carries its configured priority only while its repmgrd monitors
        the primary, 0 otherwise (decide.election_priority), written on the primary when it differs."""
        if time.monotonic() - self.priority_checked < PRIORITY_CHECK_SECONDS or not self.is_registered \
                or not postgres.running() or not postgres.is_standby():
            return
        self.priority_checked = time.monotonic()
        configured, now, found = priority.configured(), priority.recorded(), self.prober.primary()
        if configured is None or now is None or found is None:
            return  # during a failover (no primary seen) nothing is written: repmgr's election is under way
        recorded, last_seen = now
        wanted = decide.election_priority(configured, monitoring("standby", repmgrd_running(), last_seen))
        written, written_at = self.priority_written
        if wanted == recorded or (wanted == written and time.monotonic() - written_at < PRIORITY_REWRITE_SECONDS):
            return  # the local copy lags the primary's (or this standby does not stream): no second write yet
        if priority.record(found[0], wanted):
            self.priority_written = (wanted, time.monotonic())
            log(f"election priority {recorded} → {wanted}: repmgrd "
                + ("monitors the primary again" if wanted else "does not monitor the primary (never elected now)"))

    def report_lost_slots(self) -> None:
        """A standby that fell more than postgres.max_wal_keep behind has lost its slot and cannot catch up by
        streaming: one `pgdock_slot_lost` event per slot (status shows it as lagging or down)."""
        if time.monotonic() - self.slots_checked < SLOT_CHECK_SECONDS or not postgres.running() \
                or postgres.is_standby():
            return
        self.slots_checked = time.monotonic()
        try:
            with postgres.local_conn() as conn:
                lost = {row[0] for row in conn.execute("SELECT slot_name FROM pg_replication_slots "
                                                       "WHERE wal_status = 'lost'").fetchall()}
        except psycopg.Error:
            return  # PostgreSQL is starting or stopping: the next check sees the slots
        for slot in sorted(lost - self.lost_slots):
            events.record(contract.EVENT_SLOT_LOST, f"replication slot {slot} lost: its standby fell more than "
                          "postgres.max_wal_keep behind and must be cloned again (remove its data volume)")
        self.lost_slots = lost

    def ensure_daemons(self) -> None:
        if self.sshd is None or self.sshd.poll() is not None:
            self.sshd = subprocess.Popen(sshd_command())
        repmgrd_alive = self.repmgrd is not None and self.repmgrd.poll() is None
        if repmgrd_alive or time.monotonic() - self.repmgrd_started < REPMGRD_RESTART_SECONDS:
            return
        if self.is_registered and not REPMGRD_HELD.exists() and postgres.running():
            self.repmgrd_started = time.monotonic()
            extra = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.getuid() == 0 else {}
            # --no-pid-file: the agent is repmgrd's only keeper. A container that was killed keeps repmgrd's
            # /tmp/repmgrd.pid; after a restart its number often belongs to another live process (PIDs start
            # again from 1), and repmgrd then refused to start for good: no election, a failover that never came.
            self.repmgrd = subprocess.Popen(
                ["repmgrd", "-f", str(contract.REPMGR_CONF), "--daemonize=false", "--no-pid-file"],
                env={**os.environ, "HOME": str(postgres.HOME), "PGPASSFILE": str(postgres.HOME / ".pgpass")},
                **extra)

    def keep_pooler(self) -> None:
        """PgBouncer forwards to the primary: this node while it is one, else the one the prober sees ready."""
        if self.pooler is None:
            return
        i_am_primary = postgres.running() and not postgres.is_standby() and not bootstrap.BOOTSTRAPPING.exists() \
            and not self.stops_postgres()
        found = self.prober.primary()
        self.pooler.step(i_am_primary, f"{found[0].address}:{found[0].port}" if found else None)

    # ------------------------------------------------------------ the loop

    def step(self) -> None:
        self.busy = True
        try:
            self.apply(decide.next_action(self.observe()))
            self.ensure_registered()
            self.keep_paused()
            self.keep_priority()
            self.report_lost_slots()
        finally:
            self.busy = False
        self.ensure_daemons()
        self.keep_pooler()

    def shutdown(self, *_: object) -> None:
        self.stopping.set()
        if self.busy and not postgres.running():
            raise StopRequested  # leave a long first start at once; a running node stops in order below

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(RUN, "postgres", "postgres")
        postgres.PG_HELD.unlink(missing_ok=True)
        REPMGRD_HELD.unlink(missing_ok=True)
        REFUSED.unlink(missing_ok=True)
        self.prepare_start()
        events.EVENTS.touch()
        shutil.chown(events.EVENTS, "postgres", "postgres")
        postgres.forward_log()
        install_secrets()
        self.prober.start()
        api.start(self.stops_postgres, self.stopping)
        self.prober.wait_round(self.started)
        pause = TICK
        while not self.stopping.wait(pause):
            try:
                self.step()
                pause = TICK
            except StopRequested:
                break
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                pause = TICK if postgres.running() and not postgres.is_standby() else RETRY_SECONDS
                set_status(f"step failed, retrying in {pause:g} s: {type(exc).__name__}: {exc}")
        self.stop_all()

    def prepare_start(self) -> None:
        """Before PostgreSQL starts in this container: an operator's reinit empties the data directory (the
        first step then clones; REINIT stays until the clone is done, so an interrupted one is redone), WAL
        spools speak only for one container's life (archive.py, restore_wal.py), and
        without maintenance mode repmgr's own pause record goes (a `resume` may have missed this node); lock
        files of a killed PostgreSQL whose PIDs other processes hold now go too (PostgreSQL would not start)."""
        for lock in postgres.clear_stale_locks():
            log(f"removed {lock}: left by a PostgreSQL that was killed; its PID is another process's now")
        archive.clear_spool()
        restore_wal.clear_spool()
        if REINIT.exists():
            log(f"reinit: emptying {postgres.PGDATA}; the node clones again from the primary")
            postgres.empty_pgdata()
        if not postgres.PAUSED.exists():
            postgres.REPMGRD_STATE.unlink(missing_ok=True)

    def stop_all(self) -> None:
        log("SIGTERM: stopping repmgrd, then PostgreSQL (fast shutdown)")
        self.prober.stop()
        if self.repmgrd and self.repmgrd.poll() is None:
            self.repmgrd.terminate()
            self.repmgrd.wait(10)
        if self.pooler:
            self.pooler.stop()
        postgres.stop_held("fast")
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
        log("stopped cleanly")
