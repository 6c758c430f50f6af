"""The node's event log and the failover hooks.

An event is appended to the log first (a JSON line on the data volume) and the hooks
run afterwards in a detached process, each within a time budget: a hook that hangs
(a webhook that never answers) can delay neither a fence nor repmgr's promotion, which
waits for its event_notification_command to return. Hooks run as the postgres user.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from . import contract
from .node import env, log, name

EVENTS = Path(contract.EVENTS)
HOOKS = (Path(contract.FAILOVER_HOOKS) / "hetzner.sh", Path(contract.FAILOVER_HOOKS) / "hook.sh")
DEFAULT_HOOK_SECONDS = 60
HOOK_USER: str | None = "postgres"
"""Hooks never run as root (the supervisor is root for sshd's sake)."""


def event_time(timestamp: str = "") -> str:
    """repmgr's "2026-01-02 03:04:05.678+00" or nothing, as ISO 8601 UTC, so logs of all nodes sort together."""
    try:
        moment = dt.datetime.fromisoformat(timestamp) if timestamp else dt.datetime.now(dt.UTC)
    except ValueError:
        moment = dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def record(event: str, details: str, *, success: bool = True, node_id: str = "", timestamp: str = "") -> None:
    """Logs the event, then hands it to the hooks without waiting for them. A failed write is logged and
    does not stop the hooks (nor whatever action caused the event)."""
    payload = {"time": event_time(timestamp), "node_id": int(node_id or env(contract.ENV_NODE_ID, "0")),
               "node": name(), "event": event, "success": success, "details": details}
    try:
        with EVENTS.open("a") as out:
            out.write(json.dumps(payload) + "\n")
    except OSError as exc:
        log(f"cannot write the event log {EVENTS}: {exc}; event was {json.dumps(payload)}")
    if any(hook.exists() for hook in HOOKS):
        spawn_hooks(payload)


def spawn_hooks(payload: dict) -> None:
    """Starts `pgdock-agent hooks LOG HOOK...` in its own session; it outlives a short-lived caller (tini
    reaps it). The log and the hooks are passed on, so the runner needs nothing but its arguments."""
    extra = {"user": HOOK_USER, "group": HOOK_USER, "extra_groups": []} if os.getuid() == 0 and HOOK_USER else {}
    hooks = [str(hook) for hook in HOOKS if hook.exists()]
    subprocess.Popen([sys.executable, "-m", "pgdock_agent", "hooks", str(EVENTS), *hooks], start_new_session=True,
                     env={**os.environ, contract.ENV_EVENT_JSON: json.dumps(payload),
                          "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     cwd="/", **extra)


def run_hooks(log_file: Path, hooks: list[Path]) -> int:
    """Runs each hook with the event, within PGDOCK_HOOK_SECONDS each; logs a hook's result when it failed,
    timed out or said something, so the log shows real hook activity, not no-ops. hetzner.sh takes
    EVENT SUCCESS, any other hook EVENT NODE SUCCESS TIME DETAILS (and the JSON in its environment)."""
    payload = json.loads(os.environ[contract.ENV_EVENT_JSON])
    budget = float(env(contract.ENV_HOOK_SECONDS, str(DEFAULT_HOOK_SECONDS)))
    success = "1" if payload["success"] else "0"
    results = []
    for hook in hooks:
        command = ([str(hook), payload["event"], success] if hook.name == "hetzner.sh" else
                   [str(hook), payload["event"], payload["node"], success, payload["time"], payload["details"]])
        ok, said = _run_with_budget(command, budget)
        if not ok or said:
            name = contract.EVENT_HOOK_PREFIX + hook.name
            results.append({**payload, "time": event_time(), "event": name, "success": ok, "details": said[-500:]})
    if results:
        with log_file.open("a") as out:
            out.write("".join(json.dumps(line) + "\n" for line in results))
    return 0


def _run_with_budget(command: list[str], budget: float) -> tuple[bool, str]:
    """Runs a hook in its own process group; past the budget the whole group is killed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return False, f"{(out or '').strip()} [killed after {budget:g} s]".strip()
    return proc.returncode == 0, (out or "").strip()
