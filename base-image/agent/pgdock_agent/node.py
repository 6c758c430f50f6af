"""This node's settings (its env file), its status line and its log."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import contract

RUN = Path(contract.RUN)
STATUS = RUN / "status"
"""One line the status command shows, e.g. why this node refuses to start."""
SECRETS = Path(contract.SECRETS)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"pgdock-agent: {name} is not set; the node's env file is missing")
    return value


def name() -> str:
    return os.environ.get(contract.ENV_NODE, "?")


def log(message: str) -> None:
    print(f"pgdock-agent[{name()}]: {message}", file=sys.stderr, flush=True)


def set_status(text: str) -> None:
    """Shows `text` in `pgdock-gen status` and logs it once (not again while it stays the same)."""
    RUN.mkdir(parents=True, exist_ok=True)
    if STATUS.exists() and STATUS.read_text().strip() == text:
        return
    STATUS.write_text(text + "\n")
    log(text)


def password(role: str) -> str:
    return (SECRETS / contract.SECRET_PASSWORDS / role).read_text().strip()


def sshd_command() -> list[str]:
    """This node's sshd (switchover, rejoin, a major upgrade's rsync): in the foreground, on its own address and
    port only (members may share a server, each with its own address)."""
    return ["/usr/sbin/sshd", "-D", "-e", "-p", env(contract.ENV_SSH_PORT),
            "-o", f"ListenAddress={env(contract.ENV_ADDRESS)}"]
