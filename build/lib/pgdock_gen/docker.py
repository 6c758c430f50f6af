"""The one door to Docker: python-on-whales clients per context, with errors users can act on.

python-on-whales drives the docker CLI, so remote engines work through the
operator's Docker contexts (ssh://...) exactly like `docker --context n2`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .errors import DockerError

if TYPE_CHECKING:
    from python_on_whales import DockerClient

T = TypeVar("T")


@cache
def client(context: str | None = None) -> DockerClient:
    """A client for `context` (None: the local engine as configured by the environment)."""
    if shutil.which("docker") is None:
        raise DockerError("the docker CLI is not installed; run scripts/setup.sh (or install docker-ce-cli)")
    from python_on_whales import DockerClient

    return DockerClient(context=context) if context else DockerClient()


def compose(context: str | None, files: list[Path], project: str) -> DockerClient:
    """A client for one compose project (a node) on `context`'s engine."""
    from python_on_whales import DockerClient

    return DockerClient(context=context, compose_files=files, compose_project_name=project)


def uncached(context: str | None) -> DockerClient:
    """A client made anew: for checking an engine, where a cached client would hide a changed context."""
    from python_on_whales import DockerClient

    return DockerClient(context=context) if context else DockerClient()


def exec_interactive(context: str | None, container: str, command: list[str], user: str) -> None:
    """Replaces this process with `docker exec -it` (a terminal session, e.g. psql): python-on-whales
    captures output, which an interactive program cannot use."""
    argv = ["docker"] + (["--context", context] if context else []) + ["exec", "-it", "-u", user, container]
    os.execvp(shutil.which("docker") or "docker", argv + command)


def _exec_argv(context: str | None, container: str, user: str) -> list[str]:
    return ["docker"] + (["--context", context] if context else []) + ["exec", "-i", "-u", user, container]


def exec_input(context: str | None, container: str, command: list[str], user: str,
               data: bytes) -> subprocess.CompletedProcess:
    """`docker exec -i` with `data` on the command's stdin (python-on-whales has no way to pass stdin):
    for secrets, which must not appear in any command line."""
    return subprocess.run(_exec_argv(context, container, user) + command, input=data, capture_output=True,
                          check=False)


def exec_pipe(context: str | None, container: str, command: list[str], user: str) -> subprocess.Popen:
    """`docker exec -i` kept running, stdin and stdout as unbuffered pipes: for asking a long-lived
    program (psql) again and again without paying for a new exec (a runc start) each time."""
    return subprocess.Popen(_exec_argv(context, container, user) + command, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)


@contextmanager
def translated(action: str):
    """Turns a failed docker call into a DockerError that says what we were doing and why it failed."""
    from python_on_whales.exceptions import DockerException

    try:
        yield
    except DockerException as exc:
        reason = (exc.stderr or exc.stdout or "").strip().splitlines()
        detail = reason[-1] if reason else f"exit status {exc.return_code}"
        raise DockerError(f"{action} failed: {detail}") from None


def call(action: str, fn: Callable[..., T], *args, **kwargs) -> T:
    with translated(action):
        return fn(*args, **kwargs)
