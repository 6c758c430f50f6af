"""The agent's decision core as a table: observed facts in, one action (and its event) out."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pgdock_agent import contract
from pgdock_agent.decide import (
    Act,
    Answer,
    Facts,
    PeerView,
    after_failed_rejoin,
    failover_verdict,
    next_action,
    promotion_possible,
    quorum_held,
)

SYS = 7000
OTHER_SYS = 9999


def data(name: str, *, primary: bool = False, timeline: int = 1, system_id: int = SYS,
         says_primary: str | None = None, saw_primary_ago: float | None = None) -> Answer:
    return Answer(name, True, primary, timeline, system_id, says_primary=says_primary,
                  saw_primary_ago=saw_primary_ago)


def witness(name: str = "w") -> Answer:
    return Answer(name, False, True, 1, 1234)  # the witness is never in recovery: it is no primary all the same


def facts(**changes: object) -> Facts:
    """A healthy running primary n1 of 3 data nodes + witness that heard everyone a moment ago."""
    base = Facts(role="primary", name="n1", members=4, has_data=True, running=True, timeline=1, system_id=SYS,
                 answers=(data("n2"), data("n3"), witness()), contacts={"n2": 99.5, "n3": 99.5, "w": 99.5},
                 now=100.0, started=0.0, fence_after=2.5)
    return replace(base, **changes)


def down(**changes: object) -> Facts:
    """The same node with PostgreSQL not running (a later start)."""
    return facts(running=False, **changes)


def standby_of(upstream: str | None, *, since: float, answers: tuple[Answer, ...] | None = None) -> Facts:
    """A running standby n2 whose primary_conninfo names `upstream`, unchanged since `since`; by default n3 is the
    primary (promoted on timeline 2) and n1, the old one, is gone."""
    return facts(name="n2", role="standby", standby=True, upstream=upstream, upstream_since=since,
                 answers=answers if answers is not None else (data("n3", primary=True, timeline=2), witness()))


ORPHANS = (data("n2", saw_primary_ago=8.0), data("n3"), witness())
"""Standbys that lost their primary a while ago (n3 never said when): they may be electing one."""

CASES = [
    # --- a running primary: fencing is a deadline over the k-th most recent contact
    ("healthy primary keeps writing", facts(), Act.KEEP, None),
    ("all peers silent past the deadline: fence", facts(contacts={"n2": 97.0, "n3": 97.0, "w": 97.0}),
     Act.FENCE, contract.EVENT_FENCED),
    ("all peers silent, deadline not reached yet", facts(contacts={"n2": 98.0, "n3": 98.0, "w": 98.0}),
     Act.KEEP, None),
    ("deadline is exact: 2.5 s after the quorum's last contact", facts(contacts={"n2": 97.5, "n3": 97.5, "w": 90.0}),
     Act.FENCE, contract.EVENT_FENCED),
    ("witness answers while all data peers are gone (3+w): fence, two could elect",
     facts(contacts={"n2": 90.0, "n3": 90.0, "w": 99.9}), Act.FENCE, contract.EVENT_FENCED),
    ("witness answers while the data peer is gone (2+w): keep, one cannot elect",
     facts(members=3, contacts={"n2": 90.0, "w": 99.9}), Act.KEEP, None),
    ("one data peer and nothing else in 3+w: fence", facts(contacts={"n2": 99.9, "n3": 80.0, "w": 80.0}),
     Act.FENCE, contract.EVENT_FENCED),
    ("two of three peers answer in 3+w: keep", facts(contacts={"n2": 99.9, "n3": 99.9, "w": 80.0}), Act.KEEP, None),
    ("5+w: two of five peers answer: fence (three could elect)",
     facts(members=6, contacts={"n2": 99.9, "n3": 99.9, "n4": 1.0, "n5": 1.0, "w": 1.0}), Act.FENCE,
     contract.EVENT_FENCED),
    ("5+w: three of five peers answer: keep",
     facts(members=6, contacts={"n2": 99.9, "n3": 99.9, "n4": 99.9, "n5": 1.0, "w": 1.0}), Act.KEEP, None),
    ("9+w: the fence does not depend on how slowly peers answer, only on when they were asked",
     facts(members=10, contacts={f"n{i}": 97.4 for i in range(2, 11)}), Act.FENCE, contract.EVENT_FENCED),
    ("a peer never heard since start counts from the start", facts(started=98.0, contacts={}), Act.KEEP, None),
    ("a member that just registered gets time to be heard (its joining is the baseline)",
     facts(started=99.0, contacts={"n2": 99.5, "w": 50.0}), Act.KEEP, None),
    ("never heard anyone, 2.5 s after start: fence", facts(started=97.0, contacts={}), Act.FENCE,
     contract.EVENT_FENCED),
    ("clock jump backwards (now before last contact): no fence",
     facts(now=50.0, contacts={"n2": 99.5, "n3": 99.5, "w": 99.5}), Act.KEEP, None),
    ("clock jump forwards (a frozen VM woke up): fence at once", facts(now=500.0), Act.FENCE, contract.EVENT_FENCED),
    ("single-node cluster never fences", facts(members=1, answers=(), contacts={}, now=1e6), Act.KEEP, None),
    ("two data nodes, no witness: the lone primary fences", facts(members=2, contacts={"n2": 10.0}), Act.FENCE,
     contract.EVENT_FENCED),
    # --- a running primary that sees another primary
    ("another primary on a newer timeline: step down",
     facts(answers=(data("n2", primary=True, timeline=2), data("n3"), witness())), Act.STEP_DOWN,
     contract.EVENT_STEP_DOWN),
    ("another primary on an older timeline: keep (it steps down)",
     facts(timeline=3, answers=(data("n2", primary=True, timeline=2), data("n3"), witness())), Act.KEEP, None),
    ("twin on the same timeline, we have the greater name: step down",
     facts(name="n3", answers=(data("n2", primary=True), witness())), Act.STEP_DOWN,
     contract.EVENT_TWIN_PRIMARY),
    ("twin on the same timeline, we have the smaller name: keep writing, raise the event",
     facts(answers=(data("n2", primary=True), witness())), Act.KEEP, contract.EVENT_TWIN_PRIMARY),
    ("a primary of another database is no twin", facts(answers=(data("n2", primary=True, system_id=OTHER_SYS),
                                                               data("n3"), witness())), Act.KEEP, None),
    ("our timeline unreadable while another primary answers: wait",
     facts(timeline=None, answers=(data("n2", primary=True), witness())), Act.WAIT, None),
    ("the witness answering 'not in recovery' is no primary", facts(answers=(witness(),)), Act.KEEP, None),
    ("a running standby is left to repmgr", facts(standby=True, contacts={}), Act.KEEP, None),
    # --- a running standby n2 follows the one primary itself only when its repmgrd did not, for FOLLOW_GRACE
    ("standby of the primary: keep", standby_of("n3", since=0.0), Act.KEEP, None),
    ("standby of the old primary, n3 promoted 29 s ago: repmgrd still has time", standby_of("n1", since=71.0),
     Act.KEEP, None),
    ("standby of the old primary, n3 primary for 30 s: follow it", standby_of("n1", since=70.0), Act.FOLLOW, None),
    ("standby of no member, n3 primary for long: follow it", standby_of(None, since=0.0), Act.FOLLOW, None),
    ("no primary answers (an election under way): keep", standby_of("n1", since=0.0, answers=(data("n1"), witness())),
     Act.KEEP, None),
    ("the primary's metadata is not ready yet: keep",
     standby_of("n1", since=0.0, answers=(data("n1"), Answer("n3", True, True, 2, SYS, ready=False))), Act.KEEP, None),
    ("a primary of another database: never followed",
     standby_of("n1", since=0.0, answers=(data("n3", primary=True, system_id=OTHER_SYS),)), Act.KEEP, None),
    ("two primaries on the newest timeline: follow neither",
     standby_of("n1", since=0.0, answers=(data("n1", primary=True, timeline=2), data("n3", primary=True, timeline=2))),
     Act.KEEP, None),
    ("a primary on a newer timeline than another: follow the newer",
     standby_of("n1", since=0.0, answers=(data("n1", primary=True), data("n3", primary=True, timeline=2))),
     Act.FOLLOW, None),
    # --- later starts
    ("held by repmgr or an operator: leave it down", down(held=True), Act.KEEP, None),
    ("refused earlier: keep refusing", down(refused="why"), Act.REFUSE, None),
    ("standby resumes as standby", down(standby=True, answers=()), Act.START_STANDBY, None),
    ("former primary, nobody else primary, quorum answers: start as primary", down(), Act.START_PRIMARY, None),
    ("former primary hears only the witness (3+w): fenced", down(answers=(witness(),)), Act.FENCE, None),
    ("refused connections are no answers: a former primary behind a reject firewall stays down",
     down(answers=()), Act.FENCE, None),
    ("fenced while running, back in touch within the hold-down: stay down",
     down(fenced_at=95.0, hold_down=8.0), Act.FENCE, None),
    ("fenced while running, hold-down over, quorum of the witness, its standby gone: start",
     down(members=3, answers=(witness(),), contacts={"w": 99.5}, fenced_at=90.0, hold_down=8.0),
     Act.START_PRIMARY, None),
    ("a quorum answers but the new primary is out of sight: the witness names it, stay down",
     down(answers=(data("n3"), Answer("w", False, True, 1, 1234, says_primary="n2"))), Act.FENCE, None),
    ("standbys that followed a new primary name it: stay down, never a second primary",
     down(answers=(data("n3", says_primary="n2"), data("n4", says_primary="n2"), witness()), members=6),
     Act.FENCE, None),
    ("peers still name this node as primary: start", down(answers=(data("n2", says_primary="n1"),
                                                                   data("n3", says_primary="n1"), witness())),
     Act.START_PRIMARY, None),
    ("operator vouched (unfence): start alone", down(answers=(), force_primary=True), Act.START_PRIMARY, None),
    ("former primary, a primary on a newer timeline: rejoin",
     down(answers=(data("n2", primary=True, timeline=2), witness())), Act.REJOIN, None),
    ("former primary, a primary on the same timeline: rejoin (never a twin)",
     down(answers=(data("n2", primary=True), witness())), Act.REJOIN, None),
    ("former primary, the other is on an older timeline: start, it has to rejoin",
     down(timeline=3, answers=(data("n2", primary=True, timeline=2), witness())), Act.START_PRIMARY, None),
    ("former primary, a primary of another database: refuse",
     down(answers=(data("n2", primary=True, timeline=2, system_id=OTHER_SYS), witness())), Act.REFUSE, None),
    ("two primaries answer: rejoin the newest timeline",
     down(answers=(data("n2", primary=True, timeline=2), data("n3", primary=True, timeline=4))), Act.REJOIN, None),
    # --- first starts and interrupted ones
    ("initial primary, empty volume, nobody primary: initdb", down(has_data=False, answers=()),
     Act.BOOTSTRAP_PRIMARY, None),
    ("initial primary, a primary exists already (rebuilt node): clone", down(has_data=False, answers=(
        data("n2", primary=True, timeline=3),)), Act.CLONE, None),
    ("initial primary with a restore asked: restore", down(has_data=False, answers=(), restore=True),
     Act.RESTORE, None),
    ("new standby, no primary yet: wait", down(role="standby", name="n2", has_data=False, answers=()), Act.WAIT, None),
    ("new standby, the primary is still bootstrapping (not registered yet): wait",
     down(role="standby", name="n2", has_data=False, answers=(Answer("n1", True, True, 1, SYS, ready=False),)),
     Act.WAIT, None),
    ("new standby, primary answers: clone from it",
     down(role="standby", name="n2", has_data=False, answers=(data("n1", primary=True),)), Act.CLONE, None),
    ("reinit of the initial primary (now a standby), no primary answers: wait, never initdb",
     down(has_data=False, answers=(), reinit=True), Act.WAIT, None),
    ("reinit with a restore configured: still only a clone", down(has_data=False, answers=(), restore=True,
                                                                   reinit=True), Act.WAIT, None),
    ("reinit, the primary answers: clone from it", down(has_data=False, reinit=True, answers=(
        data("n2", primary=True, timeline=2),)), Act.CLONE, None),
    ("reinit of a standby whose clone was cut short: the half-made clone is emptied first, then cloned",
     down(role="standby", name="n2", has_data=False, bootstrapping=True, reinit=True,
          answers=(data("n1", primary=True),)), Act.CLONE, None),
    ("interrupted bootstrap, nobody has the database: redo", down(bootstrapping=True, answers=()),
     Act.REDO_BOOTSTRAP, contract.EVENT_BOOTSTRAP_REDONE),
    ("interrupted bootstrap, but a peer runs a copy: refuse", down(bootstrapping=True, answers=(data("n2"),)),
     Act.REFUSE, None),
    ("interrupted bootstrap while running (roles missing): redo, not 'running'", facts(bootstrapping=True,
                                                                                     answers=()),
     Act.REDO_BOOTSTRAP, contract.EVENT_BOOTSTRAP_REDONE),
    ("interrupted clone of a standby: redo", down(role="standby", name="n2", standby=True, bootstrapping=True,
                                                system_id=SYS + 1, answers=(data("n1", primary=True),)),
     Act.REDO_BOOTSTRAP, contract.EVENT_BOOTSTRAP_REDONE),
    # --- the witness
    ("witness, empty volume: bootstrap", down(role="witness", name="w", has_data=False), Act.BOOTSTRAP_WITNESS, None),
    ("witness, interrupted bootstrap: redo", down(role="witness", name="w", bootstrapping=True),
     Act.REDO_BOOTSTRAP, contract.EVENT_BOOTSTRAP_REDONE),
    ("witness, later start", down(role="witness", name="w"), Act.START_WITNESS, None),
    ("witness running: nothing to do, never fenced", facts(role="witness", name="w", contacts={}), Act.KEEP, None),
    # --- a primary that fenced itself, past its hold-down, never races an election of orphaned standbys
    ("fenced primary, hold-down over, standbys orphaned: stay down (they may be electing)",
     down(answers=ORPHANS, fenced_at=80.0, hold_down=11.0), Act.FENCE, None),
    ("fenced primary, hold-down over, standbys still hear a primary: stay down for it",
     down(answers=(data("n2", saw_primary_ago=0.0, says_primary="n3"), data("n3", primary=True, timeline=2),
                   witness()), fenced_at=80.0, hold_down=11.0), Act.REJOIN, None),
    ("fresh start of a former primary with orphaned standbys (restart-all): resume",
     down(answers=ORPHANS), Act.START_PRIMARY, None),
    ("fenced primary with orphaned standbys, operator vouches: resume",
     down(answers=ORPHANS, fenced_at=80.0, hold_down=11.0, force_primary=True), Act.START_PRIMARY, None),
]


@pytest.mark.parametrize(("why", "observed", "act", "event"), CASES, ids=[c[0] for c in CASES])
def test_decision_table(why: str, observed: Facts, act: Act, event: str | None) -> None:
    action = next_action(observed)
    assert (action.act, action.event) == (act, event), action.reason
    assert action.reason  # becomes the status line: never empty


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30


def test_twins_agree_on_exactly_one_writer() -> None:
    """Both twins decide from the same static facts (names), so exactly one of them steps down."""
    n1 = next_action(facts(name="n1", answers=(data("n2", primary=True), witness())))
    n2 = next_action(facts(name="n2", answers=(data("n1", primary=True), witness())))
    assert sorted([n1.act, n2.act], key=str) == sorted([Act.KEEP, Act.STEP_DOWN], key=str)


def test_refused_rejoin_never_starts_a_second_primary() -> None:
    for failures in (1, 2):  # a source that restarted mid-copy: stay down (never primary) and try again
        retry = after_failed_rejoin("n2", 3, 2, failures)
        assert retry.act is Act.FENCE and f"{failures} of 3" in retry.reason
    action = after_failed_rejoin("n2", 3, 2, 3)
    assert action.act is Act.REFUSE and "pg_rewind failed" in action.reason
    twin = after_failed_rejoin("n2", 3, 3, 1)
    assert twin.act is Act.REFUSE and "twin primary" in twin.reason and "rebuild" in twin.reason


@pytest.mark.parametrize(("visible", "members", "possible"), [
    (1, 2, True), (1, 3, False), (2, 3, True), (2, 4, True), (1, 4, False), (3, 6, True), (2, 6, False),
    (5, 10, True), (4, 10, False)])
def test_promotion_quorum_mirrors_repmgr(visible: int, members: int, possible: bool) -> None:
    """repmgr: visible_nodes > (members - 1) / 2, the failed primary not counted, the witness counted."""
    assert promotion_possible(visible, members) is possible


@pytest.mark.parametrize("members", range(1, 12))
def test_primary_and_the_rest_can_never_both_hold_a_quorum(members: int) -> None:
    """For every split, either the primary keeps its quorum or the others can elect, never both."""
    for answering in range(members):
        unseen = members - 1 - answering
        assert not (quorum_held(answering, members) and promotion_possible(unseen, members))


# --- the promotion gate: n2, elected at t=10 (`begun`), promotes after 5 s of the primary's silence
MEMBERS = ("n1", "n3", "w")


def views(**changed: PeerView) -> dict[str, PeerView]:
    """n1 (the primary) last answered at 9.5; n3 and w answer and last saw n1 at 9.0; all asked at 10.5."""
    base = {"n1": PeerView("n1", 14.8, contact=9.5, primary_at=9.5),
            "n3": PeerView("n3", 14.8, contact=14.8, saw_primary_at=9.0),
            "w": PeerView("w", 14.8, contact=14.8, saw_primary_at=9.0)}
    return base | changed


GATE_CASES = [
    ("primary silent long enough, nobody sees it: promote", 14.6, views(), Act.PROMOTE),
    ("primary silent 4.5 s of 5: wait", 14.0, views(), Act.WAIT),
    ("primary answered after the election began: refuse (false failover)", 14.6,
     views(n1=PeerView("n1", 12.0, contact=12.0, primary_at=12.0)), Act.REFUSE),
    ("primary answered just before the election: wait out its silence from then", 14.6,
     views(n1=PeerView("n1", 14.8, contact=9.9, primary_at=9.9)), Act.WAIT),
    ("a sibling heard the primary 1 s ago: refuse (only this node lost it)", 14.6,
     views(n3=PeerView("n3", 14.8, contact=14.8, saw_primary_at=13.6)), Act.REFUSE),
    ("the witness heard the primary 2.9 s ago: refuse", 14.6,
     views(w=PeerView("w", 14.8, contact=14.8, saw_primary_at=11.7)), Act.REFUSE),
    ("a sighting 3 s old is no veto", 14.6, views(w=PeerView("w", 14.8, contact=14.8, saw_primary_at=11.6)),
     Act.PROMOTE),
    ("a member whose latest finished probe is older than 4.5 s: wait for a fresh one", 14.6,
     views(n1=PeerView("n1", 9.9, contact=9.5, primary_at=9.5)), Act.WAIT),
    ("a silent member probed 3 s ago (its connects time out): fresh enough, promote", 14.6,
     views(n1=PeerView("n1", 11.6, contact=9.5, primary_at=9.5)), Act.PROMOTE),
    ("a member never heard of at all: wait for its probe", 14.6, {k: v for k, v in views().items() if k != "w"},
     Act.WAIT),
    ("silent members probed lately count as asked: promote", 14.6,
     views(n3=PeerView("n3", 14.5, contact=8.0, saw_primary_at=7.0)), Act.PROMOTE),
    ("no primary ever heard: its silence counts from the election", 14.6,
     views(n1=PeerView("n1", 14.8)), Act.WAIT),
    ("no primary ever heard, 5 s after the election: promote", 15.1, views(n1=PeerView("n1", 14.8)), Act.PROMOTE),
]


@pytest.mark.parametrize(("now", "seen"), [(14.6, views()), (15.1, views(n1=PeerView("n1", 14.8))), (10.0, {})])
def test_paused_the_gate_refuses_whatever_the_prober_saw(now: float, seen: dict[str, PeerView]) -> None:
    """Maintenance mode (`pgdock-gen pause`): even a verdict that would promote is a refusal, at once."""
    verdict = failover_verdict(now, 10.0, 5.0, MEMBERS, seen, paused=True)
    assert verdict.act is Act.REFUSE
    assert verdict.reason.startswith("paused")
    assert failover_verdict(now, 10.0, 5.0, MEMBERS, seen).reason != verdict.reason


@pytest.mark.parametrize(("why", "now", "seen", "act"), GATE_CASES, ids=[c[0] for c in GATE_CASES])
def test_promotion_gate(why: str, now: float, seen: dict[str, PeerView], act: Act) -> None:
    verdict = failover_verdict(now, 10.0, 5.0, MEMBERS, seen)
    assert verdict.act is act, verdict.reason
    assert verdict.reason


def test_a_fresh_probe_after_an_answer_moves_every_stamp() -> None:
    """What the prober records: a failed probe moves only `asked`; an answer moves contact, and the sighting
    (sent − the peer's own age of it); a primary's answer moves primary_at."""
    view = PeerView.after(None, "n3", 5.0, Answer("n3", True, False, 1, SYS, saw_primary_ago=1.5))
    assert view == PeerView("n3", 5.0, contact=5.0, saw_primary_at=3.5)
    view = PeerView.after(view, "n3", 6.0, None)
    assert view == PeerView("n3", 6.0, contact=5.0, saw_primary_at=3.5)
    view = PeerView.after(view, "n3", 7.0, Answer("n3", True, True, 2, SYS))
    assert view == PeerView("n3", 7.0, contact=7.0, primary_at=7.0, saw_primary_at=3.5)


def test_a_peer_that_is_starting_or_stopping_counts_as_contact_not_as_an_answer() -> None:
    """Standbys restart to follow a new primary; their postmaster's "starting up" proves they are reachable."""
    view = PeerView.after(PeerView("n3", 1.0, contact=1.0), "n3", 5.0, None, alive=True)
    assert view == PeerView("n3", 5.0, contact=5.0)
    assert PeerView.after(view, "n3", 6.0, None) == PeerView("n3", 6.0, contact=5.0)


@pytest.mark.parametrize(("configured", "monitoring", "wanted"), [
    (90, True, 90),  # repmgrd monitors the primary: the spec's priority
    (90, False, 0),  # no working repmgrd: never the candidate, another standby is elected
    (0, True, 0),  # priority 0 in the spec stays 0
])
def test_a_standby_without_a_working_repmgrd_is_never_the_candidate(configured: int, monitoring: bool,
                                                                    wanted: int) -> None:
    from pgdock_agent.decide import election_priority

    assert election_priority(configured, monitoring) == wanted


def test_the_configured_priority_is_read_from_repmgr_conf(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_agent import priority

    conf = tmp_path / "repmgr.conf"
    monkeypatch.setattr(priority.contract, "REPMGR_CONF", conf)
    assert priority.configured() is None  # unreadable: nothing is written
    conf.write_text("node_id=2\nnode_name='n2'\npriority=90\nlocation='dc1'\n")
    assert priority.configured() == 90


@pytest.mark.parametrize(("kind", "active", "expected", "step"), [
    ("standby", True, "standby", None),
    ("primary", True, "primary", None),
    ("witness", True, "witness", None),
    (None, False, "standby", "standby-register"),  # a restored copy or a new clone: no record of its own
    ("standby", False, "standby", "standby-register"),  # set inactive by a major upgrade that rsynced it
    ("primary", True, "standby", "standby-follow"),  # a rejoin whose metadata update failed
    ("primary", False, "standby", "standby-follow"),  # ... after repmgr marked the failed primary inactive
    ("standby", True, "primary", "primary-register"),  # promoted without the record changing
    ("primary", False, "primary", "primary-register"),
    ("witness", False, "witness", "witness-register"),
    (None, False, "witness", "witness-register"),
])
def test_registration_step(kind: str | None, active: bool, expected: str, step: str | None) -> None:
    from pgdock_agent.decide import registration_step

    assert registration_step(kind, active, expected) == step


@pytest.mark.parametrize(("kind", "active", "expected", "step"), [
    ("standby", False, "standby", "standby-register"),  # the rsynced standby replayed its deactivation
    ("witness", False, "witness", "witness-register"),
    ("standby", True, "standby", None),
    # a standby made primary outside the agent (a twin on one timeline): the decision loop fences or refuses
    # it; registering it as primary would make its own metadata vouch for a second primary
    ("standby", True, "primary", None),
    ("standby", False, "primary", None),
    ("primary", True, "standby", None),  # a demotion the agent did not make: its own rejoin path registers
    (None, False, "standby", None),  # the record went away (an operator's `remove`): not re-added behind them
])
def test_a_recheck_only_reactivates(kind: str | None, active: bool, expected: str, step: str | None) -> None:
    from pgdock_agent.decide import registration_step

    assert registration_step(kind, active, expected, recheck=True) == step
