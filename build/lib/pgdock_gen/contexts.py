"""`pgdock-gen contexts`: one Docker context per node, created if missing and tested.

Docker contexts replace pg-dock's docker-machine: `ssh://USER@ADDRESS` reaches a
node's engine over plain ssh (keys, known_hosts and ~/.ssh/config of the
operator apply). Each node names its context in the spec (default: its name).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import docker
from .spec import Node, Spec


@dataclass(frozen=True)
class ContextCheck:
    node: str
    context: str
    endpoint: str
    created: bool
    problem: str | None
    engine: str | None


def _complaint(stderr: str, exit_code: int) -> str:
    """What went wrong, from the docker CLI's stderr: for an ssh:// context it wraps ssh's own complaint
    ("... stderr=Permission denied (publickey).") in a long sentence, and that complaint is what matters."""
    lines = stderr.strip().splitlines()
    if not lines:
        return f"the docker CLI failed with exit status {exit_code} and said nothing"
    return lines[-1].rpartition("stderr=")[2].strip() or lines[-1]


def _classify(error: str) -> str:
    """Turns the docker CLI's failure text into what the operator should look at."""
    text = error.lower()
    if "permission denied" in text or "authentication" in text or "publickey" in text:
        return f"ssh authentication refused ({error}); add your key to the node's authorized_keys"
    if "host key verification failed" in text:
        return "the node's ssh host key is unknown; connect once with `ssh` to accept and pin it"
    if "command not found" in text or "docker: not found" in text:
        return "docker is not installed on the node"
    if "cannot connect to the docker daemon" in text or "docker.sock" in text:
        return f"the node's Docker engine is not running or the ssh user may not use it ({error})"
    if any(word in text for word in ("could not resolve", "no route", "timed out", "connection refused",
                                     "unreachable", "connection closed")):
        return f"unreachable ({error})"
    return error


def ensure(node: Node, user: str) -> tuple[str, bool]:
    """The node's context endpoint; creates the context (ssh://user@address) when it does not exist."""
    from python_on_whales import docker as local

    existing = {c.name: c for c in local.context.list()}
    if node.context in existing:
        return existing[node.context].endpoints["docker"].host, False
    endpoint = f"ssh://{user}@{node.uri_host}"
    docker.call(f"creating context {node.context}", local.context.create, node.context,
                docker={"host": endpoint}, description=f"pgdock node {node.name}")
    return endpoint, True


def check(node: Node, user: str) -> ContextCheck:
    from python_on_whales.exceptions import DockerException

    try:
        endpoint, created = ensure(node, user)
    except Exception as exc:  # creating a context fails only for local reasons; report them per node
        return ContextCheck(node.name, node.context, "-", False, str(exc), None)
    try:
        version = docker.uncached(node.context).version()
        engine = version.server.version if version.server else None
        problem = None if engine else "no Docker engine answered"
    except DockerException as exc:
        engine, problem = None, _classify(_complaint(exc.stderr or "", exc.return_code))
    return ContextCheck(node.name, node.context, endpoint, created, problem, engine)


def check_all(spec: Spec, user: str) -> list[ContextCheck]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda n: check(n, user), spec.members))
