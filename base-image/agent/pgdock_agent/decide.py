"""What a node should do next, decided from observed facts alone: no I/O, no clock, no globals.

The supervisor observes (files, pg_ctl, the prober's answers, a monotonic clock),
calls `next_action`, and applies what comes back; the action's reason becomes the
node's status line and the detail of any event. Keeping the decision pure is what
lets every safety rule (fence, step down, rejoin, refuse) be tested as a table:
`tests/unit/test_decide.py`.

The rules, in the order `next_action` applies them:

- held: someone (repmgr during a switchover, an operator) stopped PostgreSQL on purpose: leave it.
- witness: bootstrap (again, when a first start was interrupted), else start.
- a first start that was interrupted after initdb is redone from scratch, unless a peer already
  runs a copy of this database (then an operator decides).
- no data: clone from the primary, else restore or initdb as the initial primary, else wait.
- a standby (standby.signal) starts as a standby.
- a former primary starts as primary only when no data peer is primary and enough members
  answer that no promotion can have happened without it; one that fenced itself also waits
  out a hold-down and, after it, for standbys that lost their primary (they may be electing
  one: starting now could race their promotion); it rejoins (pg_rewind) a primary on a
  newer or equal timeline, and refuses a primary of another database.
- a running primary fences (stops) when, for `fence_after` seconds, too few members answered
  for it to rule out a promotion on the other side; it steps down for a primary on a newer
  timeline; of two primaries on one timeline, the one with the greater name steps down.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import contract

SIGHTING_VETO = 3.0
"""A peer that heard its primary less than this long ago still has one. As a veto: a promotion waits while
any member still hears the primary (it lives, only the candidate lost it). repmgr's sighting has a 1 s
resolution and its monitor runs every second, so a peer that sees its primary reports less than this."""


class Act(enum.Enum):
    KEEP = "keep"
    """Nothing to change."""
    WAIT = "wait"
    """Nothing can be done yet (no primary to clone from, PostgreSQL still starting)."""
    BOOTSTRAP_PRIMARY = "bootstrap-primary"
    BOOTSTRAP_WITNESS = "bootstrap-witness"
    RESTORE = "restore"
    CLONE = "clone"
    REDO_BOOTSTRAP = "redo-bootstrap"
    """Empty the half-made data directory; the next step bootstraps again."""
    START_PRIMARY = "start-primary"
    START_STANDBY = "start-standby"
    START_WITNESS = "start-witness"
    REJOIN = "rejoin"
    FENCE = "fence"
    """Stop PostgreSQL now and stay down until enough members answer."""
    STEP_DOWN = "step-down"
    """Stop PostgreSQL now; the next step rejoins the other primary."""
    REFUSE = "refuse"
    """Stay down; only an operator can resolve this."""
    PROMOTE = "promote"
    """The promotion gate's yes: repmgrd may promote this standby (see `failover_verdict`)."""
    FOLLOW = "follow"
    """`repmgr standby follow` of the primary: this standby's repmgrd missed the failover (see `_standby`)."""


@dataclass(frozen=True)
class Action:
    act: Act
    reason: str
    peer: str | None = None
    """The peer acted on: cloned from, rejoined, stepped down for."""
    event: str | None = None
    """The event to record when the node enters this action (contract.EVENT_*)."""


@dataclass(frozen=True)
class Answer:
    """One peer's answer to the prober's last query. Only a completed PostgreSQL handshake and
    query count: a refused or timed-out connection is no answer (a firewall's TCP reset says
    nothing about the node behind it)."""

    name: str
    data: bool
    """A data node (False: the witness, which is never a primary)."""
    primary: bool
    timeline: int
    system_id: int
    ready: bool = True
    """repmgr's metadata exists there: a primary is ready to be cloned only after its bootstrap registered it."""
    says_primary: str | None = None
    """Who the peer's copy of repmgr's metadata names as the active primary (a standby following a new
    primary, or the witness, knows of a promotion even when the new primary itself is out of sight)."""
    saw_primary_ago: float | None = None
    """Seconds since this standby or witness last heard its upstream primary itself (its repmgrd's last
    sighting or its WAL receiver's last message, whichever is newer; None: unknown)."""


@dataclass(frozen=True)
class PeerView:
    """What the prober knows of one peer, in this node's monotonic time: what the promotion gate reads."""

    name: str
    asked: float
    """Send time of the peer's latest finished probe, answered or not."""
    contact: float | None = None
    """Send time of its latest answered probe."""
    primary_at: float | None = None
    """Send time of the latest probe it answered as a primary (data nodes only)."""
    saw_primary_at: float | None = None
    """When it last heard the primary itself, by its latest answer that said so."""

    @classmethod
    def after(cls, old: PeerView | None, name: str, sent: float, answer: Answer | None, *,
              alive: bool = False) -> PeerView:
        """The view once a probe sent at `sent` finished with `answer` (None: no answer; `alive`: the peer's
        postmaster answered that it is starting or stopping, which is contact but says nothing of its role)."""
        old = old or cls(name, sent)
        if answer is None:
            return cls(name, sent, sent if alive else old.contact, old.primary_at, old.saw_primary_at)
        primary_at = sent if answer.data and answer.primary else old.primary_at
        saw = sent - answer.saw_primary_ago if answer.saw_primary_ago is not None else old.saw_primary_at
        return cls(name, sent, sent, primary_at, saw)


@dataclass(frozen=True)
class Facts:
    """Everything a decision may depend on, observed just before it."""

    role: str
    """The configured starting role: primary, standby or witness."""
    name: str
    members: int
    """Members of the cluster, this node included (data nodes and the witness)."""
    has_data: bool = False
    bootstrapping: bool = False
    """A first start began (initdb) and did not finish."""
    standby: bool = False
    """standby.signal is present."""
    running: bool = False
    held: bool = False
    refused: str | None = None
    """Why this node refused to start earlier in this container's life (it stays down)."""
    force_primary: bool = False
    restore: bool = False
    """This first start restores a backup instead of running initdb."""
    timeline: int | None = None
    system_id: int | None = None
    answers: tuple[Answer, ...] = ()
    """Peers that answered the latest probe (each peer's most recent answer, if recent)."""
    contacts: dict[str, float] = field(default_factory=dict)
    """Monotonic time each peer's last answered probe was sent (absent: never answered)."""
    now: float = 0.0
    started: float = 0.0
    """A baseline for peers never heard from: when this supervisor started, or when members last joined."""
    fence_after: float = 8.0
    fenced_at: float | None = None
    """Monotonic time this node, running as primary, fenced itself (None: it did not, in this container)."""
    hold_down: float = 0.0
    """How long a fenced primary stays down at least: long enough for any failover it caused to finish."""
    reinit: bool = False
    """An operator asked for a new clone (`pgdock-gen reinit`): without data this node only ever clones."""
    upstream: str | None = None
    """The member this standby's primary_conninfo names (None: none, or an address no member has)."""
    upstream_since: float = 0.0
    """Since when `upstream` and the members answering as primary have been what they are now (or since this
    agent last ran a follow)."""


FOLLOW_GRACE = 30.0
"""How long a standby may point at another member than the one primary before its agent makes it follow that
primary. repmgrd follows a new primary within seconds of a failover (and a switchover moves its siblings
itself); a standby whose repmgrd missed the failover (stopped, restarting) would point at the old primary for
ever, out of the next election's reach."""


def promotion_possible(visible: int, members: int) -> bool:
    """repmgrd's quorum check before an election (repmgrd-physical.c, do_election): a standby goes
    on only when the nodes it sees, itself included, are more than half of the nodes that share
    the failed primary as upstream (`visible_nodes > shared_upstream_nodes / 2`): every member but
    the primary, the witness included."""
    return visible * 2 > members - 1


def quorum_held(answering: int, members: int) -> bool:
    """The primary may keep writing only while the members that do not answer it could not
    elect a new primary among themselves, i.e. while they are fewer than repmgr's quorum."""
    return not promotion_possible(members - 1 - answering, members)


def quorum_since(facts: Facts) -> float:
    """The last moment the primary provably held its quorum: the send time of the probe that
    completed it. With k answers needed, that is the k-th most recent contact."""
    needed = next(k for k in range(facts.members) if quorum_held(k, facts.members))
    if needed == 0:
        return facts.now
    times = sorted((max(t, facts.started) for t in facts.contacts.values()), reverse=True)
    return times[needed - 1] if len(times) >= needed else facts.started


def _primaries(facts: Facts) -> list[Answer]:
    return sorted((a for a in facts.answers if a.data and a.primary), key=lambda a: (-a.timeline, a.name))


def next_action(facts: Facts) -> Action:
    """The single entry point: what this node does now."""
    if facts.refused:
        return Action(Act.REFUSE, facts.refused)
    if facts.held:
        return Action(Act.KEEP, "PostgreSQL was stopped on purpose (repmgr or an operator); leaving it down")
    if facts.role == "witness":
        return _witness(facts)
    if facts.bootstrapping and facts.has_data:
        return _interrupted_bootstrap(facts)
    if not facts.has_data:
        return _first_start(facts)
    if facts.running:
        return _running(facts)
    if facts.standby:
        return Action(Act.START_STANDBY, "resuming as standby")
    return _former_primary(facts)


def _witness(facts: Facts) -> Action:
    if facts.has_data and facts.bootstrapping:
        return Action(Act.REDO_BOOTSTRAP, "the witness's first start was interrupted; starting it over",
                      event=contract.EVENT_BOOTSTRAP_REDONE)
    if not facts.has_data:
        return Action(Act.BOOTSTRAP_WITNESS, "first start as witness")
    if facts.running:
        return Action(Act.KEEP, "running as witness")
    return Action(Act.START_WITNESS, "resuming as witness")


def _interrupted_bootstrap(facts: Facts) -> Action:
    holders = [a.name for a in facts.answers if a.system_id == facts.system_id and facts.system_id is not None]
    if holders:
        return Action(Act.REFUSE, f"the first start was interrupted, but {', '.join(holders)} already run this "
                      "database; rebuild this node (or finish its bootstrap by hand)")
    return Action(Act.REDO_BOOTSTRAP, "the first start was interrupted before it finished; starting it over",
                  event=contract.EVENT_BOOTSTRAP_REDONE)


def _first_start(facts: Facts) -> Action:
    primaries = [a for a in _primaries(facts) if a.ready]
    if primaries:
        return Action(Act.CLONE, f"first start as standby: cloning from {primaries[0].name}", peer=primaries[0].name)
    if facts.reinit:
        return Action(Act.WAIT, "reinit: waiting for a primary to clone from (never initdb: this node's database "
                      "lives on elsewhere)")
    if facts.role == "primary" and facts.restore:
        return Action(Act.RESTORE, "first start: restoring a backup")
    if facts.role == "primary":
        return Action(Act.BOOTSTRAP_PRIMARY, "first start as primary: initdb")
    return Action(Act.WAIT, "waiting for a primary: a new standby clones from it")


def _rejoin_or_refuse(facts: Facts, primary: Answer) -> Action:
    if primary.system_id != facts.system_id:
        return Action(Act.REFUSE, f"{primary.name} is primary of a different database (system id "
                      f"{primary.system_id}); refusing to start as a second primary: rebuild this node")
    return Action(Act.REJOIN, f"former primary: rejoining {primary.name} (timeline {primary.timeline}) "
                  "with pg_rewind", peer=primary.name)


def _former_primary(facts: Facts) -> Action:
    primaries = _primaries(facts)
    mine = facts.timeline or 0
    if primaries and primaries[0].timeline >= mine:
        return _rejoin_or_refuse(facts, primaries[0])
    if primaries:
        return Action(Act.START_PRIMARY, f"resuming as primary: {primaries[0].name} is primary on an older "
                      f"timeline ({primaries[0].timeline} < {mine}); it has to rejoin")
    if facts.force_primary:
        return Action(Act.START_PRIMARY, "resuming as primary: an operator vouched for this node (unfence)")
    if facts.fenced_at is not None and facts.now - facts.fenced_at < facts.hold_down:
        return Action(Act.FENCE, f"fenced {facts.now - facts.fenced_at:.0f} s ago: staying down {facts.hold_down:g} s "
                      "so that a failover it caused can finish before this node decides")
    orphans = sorted(a.name for a in facts.answers if a.data and not a.primary
                     and (a.saw_primary_ago is None or a.saw_primary_ago >= SIGHTING_VETO))
    if facts.fenced_at is not None and orphans:
        return Action(Act.FENCE, f"fenced: {', '.join(orphans)} lost their primary and may be electing a new "
                      "one; staying down until they have one, to rejoin it (`pgdock-agent unfence` overrides)")
    named = sorted({a.says_primary for a in facts.answers if a.says_primary not in (None, facts.name)})
    if named:
        return Action(Act.FENCE, f"fenced: peers name {', '.join(named)} as primary, out of sight here; staying down "
                      "until it answers, to rejoin it")
    answering = len(facts.answers)
    if not quorum_held(answering, facts.members):
        return Action(Act.FENCE, f"fenced: former primary hears {answering} of {facts.members - 1} peers, too few "
                      "to rule out a failover; staying down until more answer (`pgdock-agent unfence` overrides)")
    return Action(Act.START_PRIMARY, f"resuming as primary: no other primary among {answering} answering peers")


def _standby(facts: Facts) -> Action:
    """A running standby follows the one ready primary of its database when, for FOLLOW_GRACE, it pointed at
    another member (or at none). Two primaries on the newest timeline: it waits (they settle it themselves)."""
    primaries = [a for a in _primaries(facts) if a.ready and a.system_id == facts.system_id]
    if not primaries or facts.upstream == primaries[0].name:
        return Action(Act.KEEP, "running as standby")
    primary = primaries[0].name
    if len(primaries) > 1 and primaries[1].timeline == primaries[0].timeline:
        return Action(Act.KEEP, f"running as standby; {primary} and {primaries[1].name} both answer as primary on "
                      f"timeline {primaries[0].timeline}: following neither until one steps down")
    source = facts.upstream or "no member"
    if facts.now - facts.upstream_since < FOLLOW_GRACE:
        return Action(Act.KEEP, f"running as standby of {source} while {primary} is primary: repmgrd follows it, "
                      f"or this agent after {FOLLOW_GRACE:g} s")
    return Action(Act.FOLLOW, f"standby of {source} for {facts.now - facts.upstream_since:.0f} s while {primary} is "
                  "primary (its repmgrd missed the failover): following it", peer=primary)


def _running(facts: Facts) -> Action:
    if facts.standby:
        return _standby(facts)
    elapsed = facts.now - quorum_since(facts)
    if elapsed >= facts.fence_after:
        return Action(Act.FENCE, f"fenced: too few peers answered for {elapsed:.1f} s (limit {facts.fence_after:g} s);"
                      " stopped PostgreSQL so no write can be lost to a failover on the other side",
                      event=contract.EVENT_FENCED)
    for other in _primaries(facts):
        if other.system_id != facts.system_id:
            continue  # not a copy of this database: nothing it does can conflict with our writes
        if facts.timeline is None:
            return Action(Act.WAIT, f"{other.name} also answers as primary; reading our own timeline")
        if other.timeline > facts.timeline:
            return Action(Act.STEP_DOWN, f"{other.name} is primary on a newer timeline ({other.timeline} > "
                          f"{facts.timeline}): stepping down to rejoin it", peer=other.name,
                          event=contract.EVENT_STEP_DOWN)
        if other.timeline == facts.timeline and other.name < facts.name:
            return Action(Act.STEP_DOWN, f"{other.name} is also primary on timeline {other.timeline}: of two "
                          "primaries on one timeline the one with the smaller name keeps writing; stepping down",
                          peer=other.name, event=contract.EVENT_TWIN_PRIMARY)
        if other.timeline == facts.timeline:
            return Action(Act.KEEP, f"{other.name} is also primary on timeline {other.timeline}; it steps down "
                          "(the smaller name keeps writing)", peer=other.name, event=contract.EVENT_TWIN_PRIMARY)
    return Action(Act.KEEP, "running as primary")


REJOIN_TRIES = 3
"""pg_rewind fails for passing reasons too (its source restarting or stopping mid-copy): tried this often."""


def after_failed_rejoin(primary: str, timeline: int, mine: int | None, failures: int = REJOIN_TRIES) -> Action:
    """pg_rewind or repmgr's rejoin failed (`failures` times in a row): never start as a second primary; try
    again a few times, then an operator rebuilds. Of two primaries on one timeline the one that stepped down
    cannot be rewound at all (repmgr: "ahead of the rejoin target on the same timeline"): its writes since
    the split exist nowhere else, so it refuses at once."""
    if mine != timeline and failures < REJOIN_TRIES:
        return Action(Act.FENCE, f"rejoining {primary} failed ({failures} of {REJOIN_TRIES} tries); staying down "
                      "and trying again", peer=primary)
    if mine == timeline:
        return Action(Act.REFUSE, f"{primary} is primary on our timeline {timeline}; this node wrote on it too (a "
                      "twin primary), which pg_rewind cannot undo: refusing to start; keep what you need from it, "
                      "then rebuild it (remove its data volume and start it again: it clones)", peer=primary)
    return Action(Act.REFUSE, f"{primary} is primary on timeline {timeline} (ours: {mine}) and pg_rewind failed; "
                  "refusing to start as a second primary: see the log, then rebuild this node", peer=primary)



def failover_verdict(now: float, begun: float, promote_after: float, members: tuple[str, ...],
                     views: dict[str, PeerView], fresh_within: float = 4.5, *, paused: bool = False) -> Action:
    """repmgrd's failover_validation_command, decided: may this elected standby promote now?

    PROMOTE only when (1) no peer answered as primary since the election began (else the failover was
    false: REFUSE, and repmgrd holds a new election after election_rerun_interval); (2) the primary has
    been silent to this node for `promote_after` (the isolated primary fenced itself before that; WAIT);
    (3) every member finished a probe sent in the last `fresh_within` seconds (the prober's worst case
    for a peer that does not answer: a hung query cut, then a connect timeout), so a member that came
    back is seen and a prober that stopped is noticed (WAIT); (4) no peer heard the primary within
    SIGHTING_VETO seconds (REFUSE: a partition around this node only). A fenced primary stays down
    far longer than `fresh_within` (its hold-down), and a restarted one needs longer than that to start.
    Before all of that: maintenance mode (`paused`, contract.PAUSED) refuses at once; repmgrd is paused
    then too, so this is the second lock of the same door."""
    if paused:
        return Action(Act.REFUSE, "paused: automatic failover is off in maintenance mode (`pgdock-gen resume` "
                      "re-arms it; `pgdock-gen failover NODE` promotes by hand)")
    primary_at = max((v.primary_at for v in views.values() if v.primary_at is not None), default=None)
    if primary_at is not None and primary_at >= begun:
        who = next(v.name for v in views.values() if v.primary_at == primary_at)
        return Action(Act.REFUSE, f"{who} answered as primary after the election began: not promoting "
                      "(false failover)", peer=who)
    silent = now - (begun if primary_at is None else primary_at)
    if silent < promote_after:
        return Action(Act.WAIT, f"the primary has been silent for {silent:.1f} s of {promote_after:g} s")
    stale = sorted(m for m in members if m not in views or now - views[m].asked > fresh_within)
    if stale:
        return Action(Act.WAIT, f"waiting for a probe of {', '.join(stale)} sent in the last {fresh_within:g} s")
    seers = sorted(v.name for v in views.values()
                   if v.saw_primary_at is not None and now - v.saw_primary_at < SIGHTING_VETO)
    if seers:
        return Action(Act.REFUSE, f"{', '.join(seers)} heard the primary less than {SIGHTING_VETO:g} s ago: it "
                      "lives, only this node lost it; not promoting", peer=seers[0])
    return Action(Act.PROMOTE, f"the primary has been silent for {silent:.1f} s and no member heard it since "
                  f"the election began: promoting")


def election_priority(configured: int, monitoring: bool) -> int:
    """The priority a standby's repmgr record should carry now: its configured one while its repmgrd monitors
    the primary, 0 while not. repmgr's election picks a candidate by LSN, priority and id without asking whether
    the candidate's repmgrd runs; a candidate without one never promotes, the others wait for its word and then
    wait for the old primary for ever (repmgrd elects only when it loses a primary it saw up). Priority 0 keeps a
    node without a working repmgrd out of the choice, so another standby is elected."""
    return configured if monitoring else 0


def registration_step(kind: str | None, active: bool, expected: str, *, recheck: bool = False) -> str | None:
    """What makes repmgr's record of this node say what the node is (`expected`: primary, standby, witness),
    from the record's type (`kind`, None without one) and whether it is active; None when it already does or
    must be left alone. repmgrd refuses to run on a wrong record, and repmgr's election counts only active ones.
    A record set inactive (a major upgrade does so while it rebuilds the standbys) is registered again; a
    standby recorded as primary (a rejoin whose metadata update failed) follows, which also rewrites its slot.
    A `recheck` (the node was found registered before) acts on an inactive record of the right type only: a
    role that changed under the agent (a standby made primary outside it, a twin) is the decision loop's to
    settle (fence, refuse), never a re-registration's."""
    if kind == expected and active:
        return None
    if recheck and kind != expected:
        return None
    if expected in ("primary", "witness"):
        return f"{expected}-register"
    return "standby-follow" if kind not in (None, expected) else "standby-register"
