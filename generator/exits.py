"""The exit statuses of `pgdock-gen`, spelled once: scripts and monitoring branch on them.

Every command exits OK or, when it could not do its work, FAILED; bad input is USAGE. `status`
adds two verdicts about the cluster it looked at (DEGRADED, DOWN), so a script can tell "the
cluster is unwell" from "pgdock could not look".
"""

from __future__ import annotations

OK = 0
"""Done; for `status`: healthy (one writable primary, every member in and streaming)."""
FAILED = 1
"""An operation failed (for `status`: it could not look)."""
USAGE = 2
"""Bad input: a spec, a flag, a path the user must fix."""
DEGRADED = 3
"""`status`: a writable primary, but some member is down, fenced, not streaming or not managed by repmgr."""
DOWN = 4
"""`status`: no writable primary."""

MEANINGS = {OK: "healthy", FAILED: "could not look (an operation failed)", USAGE: "usage error or bad input",
            DEGRADED: "degraded: a writable primary, but some member down, fenced or not streaming",
            DOWN: "down: no writable primary"}
"""What `status` means by each exit status: its --help and the README list these."""


def help_text() -> str:
    """The exit statuses as lines for a command's --help (click keeps them apart after a \\b)."""
    return "\n".join(f"  {code}  {meaning}" for code, meaning in MEANINGS.items())
