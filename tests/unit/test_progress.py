"""progress.py: plain lines where nobody watches a terminal (tests, CI, pipes), and the push's byte count."""

from __future__ import annotations

import io
import re

import pytest

from pgdock_gen import progress, ship

STAMP = r"\[\d\d:\d\d:\d\d\] "


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stream_that_is_not_a_terminal_gets_plain_lines() -> None:
    out = NotATerminal()
    report = progress.reporter(out)
    assert isinstance(report, progress.Plain)
    report("n1: installing config v2")
    with progress.step(report, "n2: sending pgdock/base:17 (docker save | load)", 3_000_000) as advance:
        advance(1_000_000)
        advance(2_500_000)
    report.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(re.match(STAMP, line) for line in lines)
    assert lines[0].endswith("n1: installing config v2")
    assert lines[1].endswith("n2: sending pgdock/base:17 (docker save | load)")  # the e2e tests grep this text
    assert re.search(r"n2: sending pgdock/base:17 \(docker save \| load\): done, 3\.5 MB in \d+\.\d s$", lines[2])
    assert "\x1b" not in out.getvalue()


def test_a_step_without_a_measure_says_when_it_ends() -> None:
    out = NotATerminal()
    with progress.step(progress.reporter(out), "base backup on n1"):
        pass
    assert re.search(r"base backup on n1: done, in \d+\.\d s$", out.getvalue().splitlines()[-1])


def test_a_step_that_fails_prints_no_done_line() -> None:
    out = NotATerminal()
    with pytest.raises(RuntimeError), progress.step(progress.reporter(out), "building the images of shop"):
        raise RuntimeError("build failed")
    assert "done" not in out.getvalue()


def test_a_terminal_gets_bars_unless_it_is_dumb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert progress.is_terminal(Terminal()) and not progress.is_terminal(NotATerminal())
    monkeypatch.setenv("TERM", "dumb")
    assert not progress.is_terminal(Terminal())


def test_the_live_reporter_logs_messages_and_survives_an_estimate_that_was_short(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    report = progress.reporter(out)
    assert isinstance(report, progress.Live)
    try:
        report("n1: installing config v2")
        with progress.step(report, "n2: sending x", 10) as advance:
            advance(25)
            assert report.bars.tasks[0].total == 25
        assert report.bars.tasks == []
    finally:
        report.close()
    assert "n1: installing config v2" in out.getvalue()


def test_a_plain_callable_still_works_as_progress() -> None:
    said: list[str] = []
    with progress.step(said.append, "base backup on n1", 100) as advance:
        advance(50)
    assert said == ["base backup on n1"]


def test_the_push_counts_the_bytes_of_docker_save() -> None:
    moved: list[int] = []
    assert b"".join(ship._counted(iter([b"abc", b"", b"defgh"]), moved.append)) == b"abcdefgh"
    assert moved == [3, 0, 5]


def test_bars_leave_stdout_to_the_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`lab up --json > status.json` on a terminal: the document goes to stdout, not through the bars' console."""
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    report = progress.reporter(out)
    try:
        with progress.step(report, "building the images of shop"):
            print('{"format": 1}')
    finally:
        report.close()
    assert capsys.readouterr().out == '{"format": 1}\n'
    assert '"format"' not in out.getvalue()


class FakeImages:
    """The image side of a Docker client: `has` maps tag -> image id; `load` takes the streamed chunks."""

    def __init__(self, has: dict[str, str], chunks: list[bytes] = ()) -> None:
        self.has, self.chunks, self.loaded = has, list(chunks), b""

    def exists(self, tag: str) -> bool:
        return tag in self.has

    def inspect(self, tag: str):
        return type("Image", (), {"id": self.has[tag], "size": sum(map(len, self.chunks))})()

    def save(self, tag: str):
        return iter(self.chunks)

    def load(self, stream, quiet: bool = False) -> list[str]:
        self.loaded = b"".join(stream)
        self.has["pgdock/base:17"] = "sha256:1"
        return []


def test_push_reports_plain_lines_with_the_bytes_it_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_gen import docker

    local = type("Local", (), {"image": FakeImages({"pgdock/base:17": "sha256:1"}, [b"x" * 600_000] * 5)})()
    remote = type("Remote", (), {"image": FakeImages({})})()
    monkeypatch.setattr(docker, "client", lambda context=None: local)
    out = NotATerminal()
    assert ship.ship(remote, ["pgdock/base:17"], node="r2", progress=progress.reporter(out)) == ["pgdock/base:17"]
    assert remote.image.loaded == b"x" * 3_000_000
    first, last = out.getvalue().splitlines()
    assert first.endswith("r2: sending pgdock/base:17 (docker save | load)")
    assert re.search(r"r2: sending pgdock/base:17 \(docker save \| load\): done, 3\.0 MB in", last)
