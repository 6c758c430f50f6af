"""The node's health API: a small read-only HTTP server on the node's address and `api_port`.

    GET /primary          200 only on the writable, unfenced primary (HAProxy's read-write check)
    GET /replica[?lag=X]  200 on a streaming standby within X (bytes: 1048576, 16MB; seconds: 10s)
    GET /health           200 when PostgreSQL answers
    GET /pooler           200 while this node's PgBouncer accepts connections (HAProxy's check with via_pooler)
    GET /status           this node's JSON as `pgdock-gen status` shows it (`pgdock-agent state`)
    GET /metrics          Prometheus text exposition (metrics.py)

It only gathers facts (observe.py) and sends the verdicts of health.py; HEAD is GET without a body,
every other method is refused. Nothing it sends carries a secret: roles, lags, names, addresses and the
node's status line. It has no authentication, like PostgreSQL's port it is bound to the node's address
only: open it to the members, the app hosts running HAProxy and Prometheus.

It runs as a daemon thread of the supervisor (`start`): a request that fails is answered 503 and the
server keeps serving; a server that dies (its port taken, say) is started again a few seconds later; the
supervisor never waits for it. One gathering runs at a time and its result serves every request of the
next half second, so a flood of requests opens at most one PostgreSQL connection at a time.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import contract, health, metrics
from .health import BAD_REQUEST, OK, UNAVAILABLE, Facts

NOT_FOUND = 404
NOT_ALLOWED = 405
FRESH_SECONDS = 0.5
"""A gathering answers the requests of this long: HAProxy's checks of several app hosts share it."""
REQUEST_TIMEOUT = 5.0
"""A client that sends its request slower than this is dropped (a slow client must not hold a thread)."""
RESTART_SECONDS = 5.0
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Response:
    code: int
    content_type: str
    body: str


@dataclass(frozen=True)
class Looks:
    """How the server sees the node: `facts(detailed)` (observe.gatherer) and `state()` (status.node_state)."""

    facts: Callable[[bool], Facts]
    state: Callable[[], dict]
    pooler: Callable[[], bool | None] = lambda: None
    """Whether this node's PgBouncer accepts connections; None without one (pooler.accepting)."""


def _text(verdict: health.Verdict) -> Response:
    return Response(verdict.code, TEXT, verdict.reason + "\n")


def answer(target: str, looks: Looks) -> Response:
    """The response to `GET target` (path and query): routes to a verdict; facts that cannot be gathered are 503."""
    url = urlsplit(target)
    query = parse_qs(url.query)
    try:
        if url.path == contract.API_PRIMARY:
            return _text(health.primary(looks.facts(False)))
        if url.path == contract.API_REPLICA:
            try:
                bound = health.parse_lag(query["lag"][-1]) if "lag" in query else None
            except ValueError as exc:
                return Response(BAD_REQUEST, TEXT, f"{exc}\n")
            return _text(health.replica(looks.facts(False), bound))
        if url.path == contract.API_HEALTH:
            return _text(health.health(looks.facts(False)))
        if url.path == contract.API_POOLER:
            return _text(health.pooler(looks.facts(False).node, looks.pooler()))
        if url.path == contract.API_STATUS:
            return Response(OK, "application/json", json.dumps(looks.state()) + "\n")
        if url.path == contract.API_METRICS:
            return Response(OK, metrics.CONTENT_TYPE, metrics.exposition(looks.facts(True)))
    except Exception as exc:  # noqa: BLE001 - a failed look is an unavailable node, never a dead server
        return Response(UNAVAILABLE, TEXT, f"cannot look at this node: {type(exc).__name__}\n")
    paths = ", ".join((contract.API_PRIMARY, contract.API_REPLICA, contract.API_HEALTH, contract.API_POOLER,
                       contract.API_STATUS, contract.API_METRICS))
    return Response(NOT_FOUND, TEXT, f"no such path; try {paths}\n")


class Shared:
    """Calls `look` at most once at a time, and serves its result for FRESH_SECONDS to every caller."""

    def __init__(self, look: Callable, lock: threading.Lock, fresh: float = FRESH_SECONDS) -> None:
        self.look, self.lock, self.fresh = look, lock, fresh
        self.cached: dict[object, tuple[float, object]] = {}

    def __call__(self, *args: object) -> object:
        with self.lock:
            at, value = self.cached.get(args, (float("-inf"), None))
            if time.monotonic() - at >= self.fresh:
                value = self.look(*args)
                self.cached[args] = (time.monotonic(), value)
            return value


def shared(looks: Looks) -> Looks:
    """`looks` behind one lock and a short cache (see Shared)."""
    lock = threading.Lock()
    return Looks(facts=Shared(looks.facts, lock), state=Shared(looks.state, lock),  # type: ignore[arg-type]
                 pooler=looks.pooler)


class Handler(BaseHTTPRequestHandler):
    server: Server
    timeout = REQUEST_TIMEOUT
    server_version = "pgdock-agent"
    sys_version = ""

    def _send(self, body: bool) -> None:
        response = answer(self.path, self.server.looks)
        data = response.body.encode()
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._send(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(body=False)

    def _refuse(self) -> None:
        self.send_response(NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        """Quiet: HAProxy checks every node every second; failures show in the answers, not the log."""


CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
"""What writing to (or reading from) a client that hung up raises: HAProxy's checks close their connection
as soon as they have the status line, often before the server has written the rest."""


def worth_logging(exc: BaseException | None) -> bool:
    """Whether a request's failure says something about this server: a client that went away does not."""
    return not isinstance(exc, CLIENT_GONE)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, port: int, looks: Looks) -> None:
        self.address_family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        self.looks = looks
        super().__init__((address, port), Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """socketserver's traceback on stderr (the container log), except for clients that hung up: one per
        health check would flood the log."""
        if worth_logging(sys.exc_info()[1]):
            super().handle_error(request, client_address)


def serve(address: str, port: int, looks: Looks, stopping: threading.Event,
          log: Callable[[str], None]) -> None:
    """Serves until `stopping` is set; a server that fails is started again RESTART_SECONDS later (a failure
    is logged when it differs from the previous one: a port that stays taken is said once, not every 5 s)."""
    said = None
    while not stopping.is_set():
        try:
            with Server(address, port, looks) as server:
                log(f"health API on {address}:{port}")
                said = None
                watcher = threading.Thread(target=lambda: (stopping.wait(), server.shutdown()), daemon=True)
                watcher.start()
                server.serve_forever()
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            failure = f"health API on {address}:{port} failed ({type(exc).__name__}: {exc}); " \
                      f"retrying every {RESTART_SECONDS:g} s"
            if failure != said:
                log(failure)
            said = failure
        stopping.wait(RESTART_SECONDS)


def start(fenced: Callable[[], bool], stopping: threading.Event) -> threading.Thread | None:
    """Starts the API for this node as a daemon thread (None when the env file names no api_port: a repo
    rendered before the API existed)."""
    import os

    from .node import env, log
    from .observe import gatherer
    from .status import node_state

    port = os.environ.get(contract.ENV_API_PORT)
    if not port:
        return None
    from .pooler import accepting

    looks = shared(Looks(facts=gatherer(fenced), state=node_state, pooler=accepting))
    thread = threading.Thread(target=serve, args=(env(contract.ENV_ADDRESS), int(port), looks, stopping, log),
                              name="health-api", daemon=True)
    thread.start()
    return thread
