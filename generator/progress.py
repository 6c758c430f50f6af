"""How long steps tell the operator where they are: rich progress bars on a terminal, plain lines otherwise.

Every operation takes a `progress` callable and calls it with one line per step ("n2: sending …").
A long step with a measure (bytes pushed) or without one (an image build, a base backup) runs inside
`step(progress, description, total)`, which yields an `advance(amount)` callable. This module is the
only place that decides how that looks:

- stderr is a terminal: each line is logged above a live area; the step in progress shows a bar
  (a byte count and rate when it has a total, a pulsing bar and the elapsed time when not);
- otherwise (tests, CI, a pipe): timestamped plain lines only, the step's description when it starts
  and one line when it ends, so logs stay greppable and free of control characters.

A plain callable (e.g. `print` or a list's `append`) still works as `progress`: `step` then reports the
description through it and ignores the amounts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

Advance = Callable[[int], None]
"""Called with the bytes a step moved since its last call."""


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _size(amount: float) -> str:
    return f"{amount / 1e6:.1f} MB"


class Plain:
    """Timestamped lines on a stream that is not a terminal: a step's description when it starts and one
    line when it ends, with the bytes it moved."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, message: str) -> None:
        print(f"[{_stamp()}] {message}", file=self.stream, flush=True)

    def _bar(self, description: str, total: int | None) -> tuple[Callable[[int, float], None], Callable[[], None]]:
        """How a running step is shown: (update with bytes so far and seconds, remove); nothing here."""
        return lambda moved, seconds: None, lambda: None

    @contextmanager
    def step(self, description: str, total: int | None) -> Iterator[Advance]:
        self(description)
        started, moved = time.monotonic(), 0
        show, remove = self._bar(description, total)

        def advance(amount: int) -> None:
            nonlocal moved
            moved += amount
            show(moved, time.monotonic() - started)

        try:
            yield advance
        finally:
            remove()
        self(f"{description}: done, {f'{_size(moved)} ' if moved else ''}in {time.monotonic() - started:.1f} s")

    def close(self) -> None:
        self.stream.flush()


class Live(Plain):
    """rich's live progress on a terminal: messages (and the steps' end lines) above, the running steps'
    bars below, with the bytes moved and the rate when a step counts them."""

    def __init__(self, stream: IO[str]) -> None:
        from rich import progress as rp
        from rich.console import Console

        super().__init__(stream)
        console = Console(file=stream, highlight=False, log_path=False)
        self.bars = rp.Progress(rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(),
                                rp.TextColumn("{task.fields[moved]}"), rp.TimeElapsedColumn(),
                                console=console, transient=True, redirect_stdout=False, redirect_stderr=False)
        # stdout stays the command's own: rich would otherwise route it through this stderr console, and
        # `pgdock-gen lab up --json > status.json` would write its document to the terminal
        self.bars.start()

    def __call__(self, message: str) -> None:
        self.bars.console.log(message)

    def _bar(self, description: str, total: int | None) -> tuple[Callable[[int, float], None], Callable[[], None]]:
        task = self.bars.add_task(description, total=total, moved="")

        def show(moved: int, seconds: float) -> None:
            of = f"/{_size(total)}" if total and moved <= total else ""  # an estimate that was short is dropped
            self.bars.update(task, completed=moved, total=max(total, moved) if total else None,
                             moved=f"{_size(moved)}{of}, {_size(moved / max(seconds, 0.001))}/s")

        return show, lambda: self.bars.remove_task(task)

    def close(self) -> None:
        self.bars.stop()


def is_terminal(stream: IO[str]) -> bool:
    """Bars only where someone watches: a terminal that can draw them (not TERM=dumb)."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def reporter(stream: IO[str] | None = None) -> Plain | Live:
    """The reporter for `stream` (default stderr): the one place that chooses bars or plain lines."""
    stream = stream or sys.stderr
    return Live(stream) if is_terminal(stream) else Plain(stream)


@contextmanager
def step(progress: Callable[[str], None], description: str, total: int | None = None) -> Iterator[Advance]:
    """A long step: a bar (or plain start and end lines) from a Reporter; from a plain callable, just the
    description. `total` is the step's size in bytes when known."""
    if isinstance(progress, Plain | Live):
        with progress.step(description, total) as advance:
            yield advance
        return
    progress(description)
    yield lambda amount: None


@contextmanager
def polled(measure: Callable[[], int], advance: Advance, every: float = 2.0) -> Iterator[None]:
    """Feeds `advance` from `measure` (bytes done so far, read from outside, e.g. an upload's parts in S3)
    every `every` seconds while the body runs, for steps that report nothing themselves. Best effort: a
    measure that fails is skipped, since watching must never fail the step it watches."""
    stop = threading.Event()
    reported = 0

    def look() -> None:
        nonlocal reported
        try:
            now = measure()
        except Exception:  # any failure to look just leaves the bar where it was
            return
        if now > reported:
            advance(now - reported)
            reported = now

    def poll() -> None:
        while not stop.wait(every):
            look()

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(every + 5)
    look()  # the step succeeded: its last bytes, so the end line tells the whole amount
