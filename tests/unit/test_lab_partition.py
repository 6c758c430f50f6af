"""`lab isolate --partition drop|reject|disconnect` and `lab heal` (issue 9), without a Docker engine.

The iptables plans are pure and checked as a table; running them is checked against a small
in-memory iptables (chains, rules, -C/-D/-N/-X semantics), and the command's order and error
lines against a fake docker client. The e2e layer (tests/e2e/test_partition.py) runs them for real.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pgdock_gen import docker, lab
from pgdock_gen.errors import DockerError, UsageError

CHAIN = lab.PARTITION_CHAIN
IN_HOOK = ("INPUT", "!", "-i", "lo", "-j", CHAIN)
OUT_HOOK = ("OUTPUT", "!", "-o", "lo", "-j", CHAIN)
EXISTS = ("-n", "-L", CHAIN)


def step(*args: str, guard: tuple[str, ...] = (), if_guard: bool = True) -> lab.IptablesStep:
    return lab.IptablesStep(tuple(args), guard, if_guard)


CREATE = [step("-N", CHAIN, guard=EXISTS, if_guard=False), step("-F", CHAIN)]
HOOK = [step("-I", "INPUT", "1", *IN_HOOK[1:], guard=("-C", *IN_HOOK), if_guard=False),
        step("-I", "OUTPUT", "1", *OUT_HOOK[1:], guard=("-C", *OUT_HOOK), if_guard=False)]
PLANS = {
    "drop": CREATE + [step("-A", CHAIN, "-j", "DROP")] + HOOK,
    "reject": CREATE + [
        step("-A", CHAIN, "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "RETURN"),
        step("-A", CHAIN, "-p", "icmp", "--icmp-type", "port-unreachable", "-j", "RETURN"),
        step("-A", CHAIN, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"),
        step("-A", CHAIN, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"),
    ] + HOOK,
}
HEAL = [step("-D", *IN_HOOK, guard=("-C", *IN_HOOK)), step("-D", *OUT_HOOK, guard=("-C", *OUT_HOOK)),
        step("-F", CHAIN, guard=EXISTS), step("-X", CHAIN, guard=EXISTS)]


@pytest.mark.parametrize("mode", sorted(PLANS))
def test_partition_plan_table(mode: str) -> None:
    assert lab.partition_plan(mode) == PLANS[mode]


def test_heal_plan_removes_hooks_then_the_chain() -> None:
    assert lab.heal_plan() == HEAL


@pytest.mark.parametrize("mode", ["disconnect", "bogus"])
def test_partition_plan_refuses_modes_it_does_not_filter(mode: str) -> None:
    with pytest.raises(UsageError, match="drop or reject"):
        lab.partition_plan(mode)


def test_every_mode_is_a_cli_choice() -> None:
    assert set(lab.PARTITIONS) == {"drop", "reject", "disconnect"}


class FakeIptables:
    """The filter table of one namespace, enough of it for the plans: builtin chains keep a foreign rule."""

    FOREIGN = ("-p", "udp", "--dport", "9", "-j", "DROP")

    def __init__(self) -> None:
        self.chains: dict[str, list[tuple[str, ...]]] = {"INPUT": [self.FOREIGN], "OUTPUT": []}
        self.calls: list[tuple[str, ...]] = []

    def _referenced(self, chain: str) -> bool:
        return any(rule[-2:] == ("-j", chain) for rules in self.chains.values() for rule in rules)

    def _jump_ok(self, rule: tuple[str, ...]) -> bool:
        target = rule[rule.index("-j") + 1]
        return target in self.chains or target in {"DROP", "REJECT", "RETURN", "ACCEPT"}

    def do(self, args: tuple[str, ...]) -> bool:
        op, rest = args[0], args[1:]
        chains = self.chains
        if op == "-S":
            return True
        if op == "-n":
            return rest[1] in chains
        if op in ("-N", "-F"):
            if (rest[0] in chains) != (op == "-F"):
                return False
            chains[rest[0]] = []
            return True
        if op == "-X":
            if rest[0] not in chains or chains[rest[0]] or self._referenced(rest[0]):
                return False
            del chains[rest[0]]
            return True
        if op == "-A":
            if rest[0] not in chains or not self._jump_ok(rest[1:]):
                return False
            chains[rest[0]].append(rest[1:])
            return True
        if op == "-I":
            if rest[0] not in chains or not self._jump_ok(rest[2:]):
                return False
            chains[rest[0]].insert(int(rest[1]) - 1, rest[2:])
            return True
        if op in ("-C", "-D"):
            if rest[1:] not in chains.get(rest[0], []):
                return False
            if op == "-D":
                chains[rest[0]].remove(rest[1:])
            return True
        raise AssertionError(f"unexpected iptables call {args}")

    def __call__(self, prefix: list[str], container: str, args: tuple[str, ...], *, check: bool = True) -> bool:
        self.calls.append(args)
        ok = self.do(args)
        if check and not ok:
            raise DockerError(f"iptables {' '.join(args)} failed")
        return ok

    def mutations(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] in ("-N", "-F", "-X", "-A", "-I", "-D")]


@pytest.fixture
def fake_iptables(monkeypatch: pytest.MonkeyPatch) -> FakeIptables:
    fake = FakeIptables()
    monkeypatch.setattr(lab, "_iptables", fake)
    return fake


def apply(steps: list[lab.IptablesStep]) -> None:
    lab.apply_iptables(["nsenter"], "c-n1", steps)


@pytest.mark.parametrize("mode", ["drop", "reject"])
def test_isolate_twice_leaves_one_chain_hooked_once(fake_iptables: FakeIptables, mode: str) -> None:
    apply(lab.partition_plan(mode))
    first = {k: list(v) for k, v in fake_iptables.chains.items()}
    apply(lab.partition_plan(mode))
    assert fake_iptables.chains == first
    assert fake_iptables.chains["INPUT"] == [IN_HOOK[1:], FakeIptables.FOREIGN]  # first, before anything else
    assert fake_iptables.chains["OUTPUT"] == [OUT_HOOK[1:]]
    assert fake_iptables.chains[CHAIN] == [s.args[2:] for s in PLANS[mode] if s.args[0] == "-A"]


def test_isolating_with_the_other_mode_replaces_the_rules(fake_iptables: FakeIptables) -> None:
    apply(lab.partition_plan("drop"))
    apply(lab.partition_plan("reject"))
    assert fake_iptables.chains[CHAIN] == [s.args[2:] for s in PLANS["reject"] if s.args[0] == "-A"]
    assert fake_iptables.chains["INPUT"].count(IN_HOOK[1:]) == 1


def test_heal_removes_exactly_the_partition(fake_iptables: FakeIptables) -> None:
    before = {k: list(v) for k, v in fake_iptables.chains.items()}
    apply(lab.partition_plan("reject"))
    apply(lab.heal_plan())
    assert fake_iptables.chains == before  # the foreign INPUT rule is untouched


def test_heal_without_a_partition_changes_nothing(fake_iptables: FakeIptables) -> None:
    apply(lab.heal_plan())
    apply(lab.heal_plan())
    assert fake_iptables.mutations() == []


def test_heal_after_a_half_applied_partition(fake_iptables: FakeIptables) -> None:
    """An isolate that stopped midway (chain made, INPUT hooked, OUTPUT not) still heals cleanly."""
    apply(lab.partition_plan("drop")[:-1])
    apply(lab.heal_plan())
    assert CHAIN not in fake_iptables.chains
    assert fake_iptables.chains["INPUT"] == [FakeIptables.FOREIGN]


# ------------------------------------------------------------------ the command, with a fake docker client


class FakeClient:
    """Just the calls container_action makes; records network changes in order."""

    def __init__(self, *, running: bool = True, attached: bool = True, pid: int = 4242) -> None:
        self.running, self.attached, self.pid = running, attached, pid
        self.log: list[str] = []
        self.container = SimpleNamespace(exists=lambda name: name.startswith("shop-"), inspect=self._inspect)
        self.network = SimpleNamespace(connect=self._connect, disconnect=self._disconnect)

    def _inspect(self, name: str):
        return SimpleNamespace(
            state=SimpleNamespace(running=self.running, pid=self.pid if self.running else 0),
            network_settings=SimpleNamespace(networks={"shop": {}} if self.attached else {},
                                             sandbox_key=Path("/var/run/docker/netns/abc")))

    def _connect(self, network: str, name: str, ip: str) -> None:
        self.log.append(f"connect {name} {ip}")
        self.attached = True

    def _disconnect(self, network: str, name: str) -> None:
        self.log.append(f"disconnect {name}")
        self.attached = False


@pytest.fixture
def shop(shop_spec_text: str):
    from pgdock_gen import spec

    return spec.parse(shop_spec_text, "cluster.yaml")


@pytest.fixture
def fake_lab(monkeypatch: pytest.MonkeyPatch, fake_iptables: FakeIptables):
    """A fake client whose namespace is reachable: iptables calls go to `fake_iptables`, logged in order."""
    client = FakeClient()
    monkeypatch.setattr(docker, "client", lambda context=None: client)
    monkeypatch.setattr(lab, "_subnet", lambda *a: "172.28.5.0/24")

    def reachable(c, name: str) -> list[str]:
        if not client.running:
            raise UsageError(f"{name} is not running")
        return ["nsenter"]

    monkeypatch.setattr(lab, "_iptables_in", reachable)
    original = fake_iptables.do

    def logged(args: tuple[str, ...]) -> bool:
        ok = original(args)
        if ok and args[0] in ("-I", "-X"):
            client.log.append(f"iptables {args[0]} {args[1]}")
        return ok

    monkeypatch.setattr(fake_iptables, "do", logged)
    return client


def test_isolate_drop_on_a_disconnected_node_filters_before_reconnecting(shop, fake_lab: FakeClient) -> None:
    fake_lab.attached = False
    lab.container_action(shop, "n1", "isolate", "drop")
    assert fake_lab.log == ["iptables -I INPUT", "iptables -I OUTPUT", "connect shop-n1 172.28.5.11"]


def test_isolate_disconnect_then_heal(shop, fake_lab: FakeClient, fake_iptables: FakeIptables) -> None:
    lab.container_action(shop, "n2", "isolate", "drop")
    lab.container_action(shop, "n2", "isolate", "disconnect")  # replaces the filter: disconnect first
    assert fake_lab.log[-2:] == ["disconnect shop-n2", f"iptables -X {CHAIN}"]
    lab.container_action(shop, "n2", "heal")
    assert fake_lab.log[-1] == "connect shop-n2 172.28.5.12"
    assert CHAIN not in fake_iptables.chains
    lab.container_action(shop, "n2", "heal")  # twice: nothing left to do
    assert fake_lab.log[-1] == "connect shop-n2 172.28.5.12" and fake_lab.attached


def test_heal_of_a_stopped_node_reconnects_without_iptables(shop, fake_lab: FakeClient,
                                                             fake_iptables: FakeIptables) -> None:
    fake_lab.running, fake_lab.attached = False, False
    lab.container_action(shop, "w1", "heal")
    assert fake_lab.log == ["connect shop-w1 172.28.5.200"]
    assert fake_iptables.calls == []


def test_namespace_is_refused_when_it_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid in this machine's own namespace (host networking, a remote engine's pid) is never filtered."""
    monkeypatch.setattr(lab, "_tool", lambda name: f"/usr/sbin/{name}")
    client = FakeClient(pid=os.getpid())
    with pytest.raises(DockerError, match="cannot reach shop-n1's network namespace"):
        lab._iptables_in(client, "shop-n1")


# ------------------------------------------------------------------ the CLI: one line, right exit code


@pytest.fixture
def spec_file(tmp_path: Path, shop_spec_text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(shop_spec_text, encoding="utf-8")
    return path


def test_isolate_of_a_stopped_node_is_one_line(run_cli, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "_tool", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(docker, "client", lambda context=None: FakeClient(running=False))
    result = run_cli("lab", "isolate", "-f", spec_file, "n1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: shop-n1 is not running; start it with `pgdock-gen lab start`, or use --partition disconnect"]


def test_isolate_without_iptables_is_one_line(run_cli, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "_tool", lambda name: None if name == "iptables" else f"/usr/bin/{name}")
    monkeypatch.setattr(docker, "client", lambda context=None: FakeClient())
    result = run_cli("lab", "isolate", "-f", spec_file, "--partition", "reject", "n1")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "iptables not found on this machine: run scripts/setup.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_isolate_of_an_unknown_node_is_one_line(run_cli, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "client", lambda context=None: FakeClient())
    result = run_cli("lab", "isolate", "-f", spec_file, "n9")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no node named 'n9'" in result.stderr


def test_unknown_partition_mode_is_refused_by_the_cli(run_cli, spec_file: Path) -> None:
    result = run_cli("lab", "isolate", "-f", spec_file, "--partition", "cut", "n1")
    assert result.exit_code == 2
    assert "'cut' is not one of 'drop', 'reject', 'disconnect'" in result.stderr


def test_isolate_reports_the_mode(run_cli, spec_file: Path, monkeypatch: pytest.MonkeyPatch,
                                  fake_lab: FakeClient) -> None:
    result = run_cli("lab", "isolate", "-f", spec_file, "--partition", "reject", "n1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "isolate (reject): n1"


@pytest.mark.parametrize("command", [("lab", "isolate"), ("drill",)])
def test_help_shows_the_partition_option_with_an_example(run_cli, command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "--partition [drop|reject|disconnect]" in result.stdout
    assert "--partition reject" in result.stdout.split("Example", 1)[1]


def test_drill_report_names_the_partition() -> None:
    from pgdock_gen import drill

    assert "partition" in drill.Report.__dataclass_fields__
    with pytest.raises(UsageError, match="unknown partition mode"):
        drill.run(SimpleNamespace(), "isolate-primary", partition="cut")
