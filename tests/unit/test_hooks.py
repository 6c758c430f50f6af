"""The rendered failover hooks (shared/failover/hetzner.sh, hook.sh) run for real with sh.

`curl` on PATH is a stand-in that records its arguments and stdin and hands on to the real curl; a local
HTTP server plays the Hetzner API and the webhook; the secrets are a temp folder (PGDOCK_SECRETS_DIR).
The secrets' env files are data: hostile values arrive byte for byte and nothing in them is run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from pgdock_gen import contract

from .conftest import MINIMAL_SPEC, render_spec

USER = '#ws+a"b\\c d'
PASSWORD = "ab\"cd $(touch pwned1);touch pwned2 `touch pwned3` \\n\\\\ 'q' %41&x=y "
"""Quotes, command substitutions, a command separator, backslashes, spaces (one trailing)."""
FAILOVER_IP = "192.0.2.10"
EVENT = {"time": "2026-01-02T03:04:05.678+00:00", "node_id": 1, "node": "n1", "event": "pgdock_fenced",
         "success": True, "details": "cut off; $(touch pwned4) \"quoted\""}


@dataclass
class Recorder:
    """What the stand-in API/webhook received; answers every request with `status`."""

    status: int = 200
    requests: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hooks") / "repo"
    render_spec(MINIMAL_SPEC, out)
    return out / "shared" / "failover"


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    httpd.shutdown()
    httpd.server_close()


@dataclass
class Sandbox:
    root: Path
    secrets: Path
    record: Path
    work: Path
    """The hooks' working directory: a command smuggled in through a secret would leave its file here."""
    env: dict[str, str]

    def run(self, script: Path, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], env=self.env, cwd=self.work, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def curl_args(self) -> str:
        return (self.record / "argv").read_text() if (self.record / "argv").exists() else ""


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    real_curl = shutil.which("curl")
    if real_curl is None:
        pytest.skip("curl is not installed")
    bin_dir, secrets, record, work = (tmp_path / name for name in ("bin", "secrets", "record", "work"))
    for folder in (bin_dir, secrets, record, work):
        folder.mkdir()
    fake = bin_dir / "curl"
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" >> "$RECORD/argv"\n'
                    'tee -a "$RECORD/stdin" | "$REAL_CURL" "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "RECORD": str(record),
           "REAL_CURL": real_curl, contract.ENV_SECRETS_DIR: str(secrets), contract.ENV_ADDRESS: "10.0.0.1",
           contract.ENV_HOOK_SECONDS: "3", contract.ENV_EVENT_JSON: json.dumps(EVENT)}
    return Sandbox(tmp_path, secrets, record, work, env)


def quoted(value: str, quote: str) -> str:
    return f"{quote}{value}{quote}"


@pytest.mark.parametrize("quote", ["", '"', "'"], ids=["bare", "double-quoted", "single-quoted"])
def test_hetzner_credentials_arrive_byte_exact_and_nothing_runs(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder], quote: str) -> None:
    url, recorder = server
    (sandbox.secrets / "hetzner.env").write_text(
        f"# Hetzner robot\nHETZNER_USER={quoted(USER, quote)}\nHETZNER_PASS={quoted(PASSWORD, quote)}\n"
        f"HETZNER_FAILOVER_IP={FAILOVER_IP}\nHETZNER_API={url}\n")
    result = sandbox.run(failover / "hetzner.sh", "repmgrd_failover_promote", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{FAILOVER_IP} now routes to 10.0.0.1" in result.stdout
    [request] = recorder.requests
    assert request["path"] == f"/failover/{FAILOVER_IP}"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert parse_qs(request["body"].decode()) == {"active_server_ip": ["10.0.0.1"]}
    assert list(sandbox.work.iterdir()) == []
    assert "pwned" not in sandbox.curl_args() and "#ws" not in sandbox.curl_args()  # off the command line


def test_hetzner_without_a_password_says_so_and_calls_nobody(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder]) -> None:
    url, recorder = server
    (sandbox.secrets / "hetzner.env").write_text(f"HETZNER_USER=u\nHETZNER_FAILOVER_IP={FAILOVER_IP}\n"
                                                 f"HETZNER_API={url}\n")
    result = sandbox.run(failover / "hetzner.sh", "standby_promote", "1")
    assert result.returncode != 0 and "HETZNER_PASS" in result.stderr
    assert recorder.requests == []


def test_hetzner_ignores_other_events_and_failed_promotions(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder]) -> None:
    url, recorder = server
    (sandbox.secrets / "hetzner.env").write_text(f"HETZNER_USER=u\nHETZNER_PASS=p\nHETZNER_API={url}\n"
                                                 f"HETZNER_FAILOVER_IP={FAILOVER_IP}\n")
    assert sandbox.run(failover / "hetzner.sh", "pgdock_fenced", "1").returncode == 0
    assert sandbox.run(failover / "hetzner.sh", "standby_promote", "0").returncode == 0
    assert recorder.requests == []


def user_hook(failover: Path, tmp_path: Path, body: str) -> Path:
    """A fork's user-hook in a private copy of the rendered hooks (the module's copy stays pristine)."""
    hooks = tmp_path / "failover"
    shutil.copytree(failover, hooks, symlinks=True)
    (hooks / "user-hook").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD/user-hook.args"\n{body}\n')
    (hooks / "user-hook").chmod(0o755)
    return hooks


def hook_args() -> list[str]:
    return [EVENT["event"], EVENT["node"], "1", EVENT["time"], EVENT["details"]]


def assert_webhook_got_the_event(recorder: Recorder, path: str) -> None:
    [request] = recorder.requests
    assert request["path"] == path
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == EVENT


def test_a_failing_user_hook_does_not_stop_the_webhook(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder]) -> None:
    url, recorder = server
    hooks = user_hook(failover, sandbox.root, "echo user-hook broke; exit 3")
    token = "/hook?token=$(touch%20pwned5);touch"
    (sandbox.secrets / "webhook.env").write_text(f'PGDOCK_WEBHOOK_URL="{url}{token}"\n')
    result = sandbox.run(hooks / "hook.sh", *hook_args())
    assert result.returncode != 0
    assert "user-hook broke" in result.stdout and "user-hook" in result.stderr
    assert_webhook_got_the_event(recorder, token)
    assert (sandbox.record / "user-hook.args").read_text() == "".join(f"{a}\n" for a in hook_args())
    assert url not in sandbox.curl_args()  # a webhook URL often carries a token: not on the command line
    assert list(sandbox.work.iterdir()) == []


def test_a_hanging_user_hook_is_killed_within_the_budget_and_the_webhook_still_runs(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder]) -> None:
    url, recorder = server
    hooks = user_hook(failover, sandbox.root, "echo user-hook waits; exec sleep 1000")
    (sandbox.secrets / "webhook.env").write_text(f"PGDOCK_WEBHOOK_URL={url}/hook\n")
    started = time.monotonic()
    result = sandbox.run(hooks / "hook.sh", *hook_args(), timeout=10)
    assert time.monotonic() - started < float(sandbox.env[contract.ENV_HOOK_SECONDS])  # before the agent's kill
    assert result.returncode != 0
    assert "user-hook: killed after 2 s" in result.stderr
    assert_webhook_got_the_event(recorder, "/hook")


def test_a_failing_webhook_does_not_stop_the_user_hook(
        failover: Path, sandbox: Sandbox, server: tuple[str, Recorder]) -> None:
    url, recorder = server
    recorder.status = 500
    hooks = user_hook(failover, sandbox.root, "touch \"$RECORD/user-hook.ran\"")
    (sandbox.secrets / "webhook.env").write_text(f"PGDOCK_WEBHOOK_URL='{url}/hook'\n")
    result = sandbox.run(hooks / "hook.sh", *hook_args())
    assert result.returncode != 0 and "webhook" in result.stderr
    assert (sandbox.record / "user-hook.ran").exists()
    assert recorder.requests  # it was tried (and retried)


def test_the_hooks_default_to_the_contracts_secrets_folder(failover: Path) -> None:
    shown = subprocess.run(["sh", "-c", '. "$1"; printf %s "$secrets"', "sh", str(failover / "lib.sh")],
                           env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    assert shown.stdout == str(contract.SECRETS)
