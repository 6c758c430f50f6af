"""`pgdock-gen pause | resume`: maintenance mode; and what the day-2 commands share (steps, events, places).

Paused, no standby is promoted automatically anywhere, by two locks on one door:

- repmgr's own pause (`repmgr service pause`): repmgrd on every registered node keeps monitoring but never
  starts a failover. repmgr keeps it in each node's shared memory and in a state file under the data
  directory (contract.REPMGRD_STATE_FILE, "NODE_ID:1"), which repmgrd reads when it starts, so it holds
  across restarts of PostgreSQL. A fresh clone copies the state file of the node it was cloned from, whose
  id is not its own: repmgr ignores it, and the clone is not paused by repmgr alone.
- pgdock's flag on each node's data volume (contract.PAUSED): the promotion gate refuses while it is there
  (decide.failover_verdict), and the agent pauses repmgrd again wherever repmgr's pause was lost (a clone, a
  recreated container, a switchover's `--repmgrd-force-unpause`). A node that is down gets the flag on its
  volume and applies it when it starts; so the pause survives node restarts.

Fencing is not touched: an isolated primary still stops itself. `resume` removes the flags, then unpauses.

Every day-2 command has the same shape as `switchover`: a pure check over the observed status rows that
returns why to refuse (or None), a plan of steps (`--dry-run` prints it), then the steps applied through
the nodes' containers; each operation is logged in the nodes' event logs with the operator's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import contract, docker, images, lock
from .cluster import NodeStatus, Running, Target
from .errors import PgdockError, UsageError
from .spec import Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from .lab import Lab

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One thing a day-2 command will do: `--dry-run` prints `text`, the command applies `kind` on `node`."""

    node: str
    kind: str
    text: str

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------- shared by the day-2 commands


def record(target: Target, event: str, details: str, progress: Progress) -> None:
    """Logs an operation in the node's event log (`pgdock-gen events`) with the operator's name. The operation
    is done by then: a node that cannot log it is reported, not an error."""
    command = [contract.AGENT, contract.AGENT_EVENT, "", event, "1", "", f"by {lock.operator()}: {details}"]
    try:
        docker.call(f"logging {event} on {target.node.name}", target.client.execute, target.container, command)
    except PgdockError as exc:
        progress(f"note: {exc}")


def agent(target: Target, *args: str) -> str:
    """Runs `pgdock-agent ARGS` in the node's container; a failure names the node and the command."""
    return docker.call(f"pgdock-agent {' '.join(args)} on {target.node.name}", target.client.execute,
                       target.container, [contract.AGENT, *args]) or ""


def repmgr(target: Target, *args: str) -> str:
    """`repmgr ARGS` as postgres in the node's container, with the node's repmgr.conf."""
    return docker.call(f"repmgr {' '.join(args)} on {target.node.name}", target.client.execute, target.container,
                       ["repmgr", "-f", str(contract.REPMGR_CONF), *args], user="postgres") or ""


def on_data_volume(spec: Spec, target: Target, script: str) -> None:
    """Runs `script` (sh) in a throwaway container of a base image with the node's data volume mounted
    where the node has it: for a node whose own container is not running."""
    volume = contract.volume(spec.cluster, target.node.name, "data")
    docker.call(f"writing to {volume}", target.client.run, images.helper_image(target.client, spec), ["-c", script],
                entrypoint="sh", volumes=[(volume, str(contract.STATE))], remove=True)


def primary_of(rows: list[NodeStatus]) -> str | None:
    return next((r.name for r in rows if r.role == "primary"), None)


@dataclass(frozen=True)
class Place:
    """Where the nodes' containers come from, to stop or recreate one: the lab's compose files (`lab`), or
    each node's compose project on its Docker context, from the rendered repo `repo`."""

    running: Running
    repo: Path
    lab: Lab | None = None

    def where(self, node: str) -> str:
        if self.lab:
            return f"lab container {self.lab.container(node)}"
        member = self.running.spec.member(node)
        return f"compose project {contract.container(self.running.spec.cluster, node)} on context {member.context}"

    def recreate(self, node: str) -> None:
        if self.lab:
            from . import lab

            lab.recreate_node(self.lab, node)
            return
        from . import deploy

        deploy.recreate(self.running.spec, self.repo, self.running.spec.member(node))

    def compose(self, node: str) -> DockerClient:
        """The node's compose project (for one-off containers of its service)."""
        if self.lab:
            return self.lab.compose(node)
        from . import deploy

        return deploy.node_compose(self.running.spec, self.repo, self.running.spec.member(node))

    def reinstall(self, node: str, carrier: str, progress: Progress) -> None:
        """The node on what the repo renders now: config carrier `carrier` (built from the repo: a deploy on
        servers builds the same one) installed, secrets delivered, its container (re)created on the images its
        compose file names (data kept, unless removed before); returns without waiting for it to be healthy."""
        if self.lab:
            from . import lab

            lab.install_node(self.lab, docker.client(), node, carrier)
            lab.recreate_node(self.lab, node)
            return
        from . import deploy

        deploy.deploy_node(self.running.spec, self.repo, self.running.spec.member(node), wait=False,
                           progress=progress)

    def remove(self, node: str, *, remove_volumes: bool, progress: Progress) -> None:
        if self.lab:
            from . import lab

            lab.remove_node(self.lab, node, remove_volumes=remove_volumes, progress=progress)
            return
        from . import deploy

        deploy.down(self.running.spec, [self.running.spec.member(node)], remove_volumes=remove_volumes,
                    progress=progress)


def place(spec_path: Path, spec: Spec, in_lab: bool) -> Place:
    if in_lab:
        from . import lab

        # rendered as it was brought up: with its S3 server when it has one (else its backup sidecars would go)
        with_s3 = docker.client().container.exists(contract.lab_s3_container(spec.cluster))
        the_lab = lab.prepare(spec_path, spec, s3=with_s3)
        return Place(the_lab.running, the_lab.repo, the_lab)
    return Place(Running(spec), spec_path.parent)


# ---------------------------------------------------------------- pause and resume


def check(rows: list[NodeStatus]) -> str | None:
    """Why pause or resume cannot be done now, or None: repmgr's own pause needs one member that answers."""
    if not any(r.reachable for r in rows):
        return "no member answers (every container is down or its engine unreachable)"
    return None


def plan(rows: list[NodeStatus], *, pause: bool) -> list[Step]:
    """The flag on every member first (the gate closes at once; on resume, the agent stops re-pausing), then
    repmgr's own pause or unpause through one member that answers, the primary if it does."""
    verb = "pause" if pause else "unpause"
    flag = "set the pause flag" if pause else "remove the pause flag"
    command = contract.AGENT_PAUSE if pause else contract.AGENT_RESUME
    steps = []
    for row in rows:
        if row.reachable:
            steps.append(Step(row.name, "agent", f"{row.name}: {flag} and {verb} its repmgrd (pgdock-agent {command})"))
        else:
            steps.append(Step(row.name, "volume", f"{row.name} (down): {flag} on its data volume; its agent "
                                                  "follows it when the node starts"))
    via = primary_of(rows) or next(r.name for r in rows if r.reachable)
    steps.append(Step(via, "repmgr", f"{via}: repmgr service {verb} (every registered node's repmgrd)"))
    return steps


def prepare(running: Running, *, pause: bool) -> list[Step]:
    rows = running.status()
    why = check(rows)
    if why:
        raise UsageError(f"{'pause' if pause else 'resume'} refused: {why}")
    return plan(rows, pause=pause)


def apply(running: Running, steps: list[Step], *, pause: bool, progress: Progress) -> list[NodeStatus]:
    """Applies a pause or resume plan; raises at the end, naming the members it could not reach."""
    spec, failed = running.spec, []
    for step in steps:
        target = running.target(step.node)
        progress(step.text)
        try:
            if step.kind == "agent":
                agent(target, contract.AGENT_PAUSE if pause else contract.AGENT_RESUME)
                record(target, contract.EVENT_PAUSED if pause else contract.EVENT_RESUMED,
                       "maintenance mode: automatic failover off" if pause else "automatic failover re-armed",
                       progress)
            elif step.kind == "volume":
                command = "touch" if pause else "rm -f"
                on_data_volume(spec, target, f"{command} {contract.PAUSED}")
            else:
                repmgr(target, "service", "pause" if pause else "unpause")
        except PgdockError as exc:
            if step.kind != "repmgr":
                failed.append(f"{step.node} ({exc})")
            else:  # a member down: its flag above (or its next start) does what repmgr could not
                progress(f"note: {exc}")
    if failed:
        raise PgdockError(f"{'pause' if pause else 'resume'} did not reach {', '.join(failed)}; run it again "
                          "once they answer")
    return running.status()
