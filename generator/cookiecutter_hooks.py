"""The work of the cookiecutter template's hooks (`hooks/pre_gen_project.py`, `post_gen_project.py`).

Cookiecutter runs the hooks with the Python it was installed into, which may hold
nothing but cookiecutter. So this module imports only the standard library at the
top: it checks first that the renderer's packages are there and names the missing
ones in one line (the pre-prompt hook), instead of a traceback halfway through. The
pre-generation hook refuses before cookiecutter writes anything (bad answers, or a
`cluster.yaml` that other answers made); the post-generation hook renders the repo
next to the spec.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

RENDER_NEEDS = {"jinja2": "jinja2", "yaml": "pyyaml", "jsonschema": "jsonschema", "cryptography": "cryptography",
                "croniter": "croniter"}
"""Import name -> distribution, for every package `render` imports (click comes with cookiecutter)."""

_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
"""Cluster and node names, as the spec's schema has them (there they also get a length limit)."""
_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]*\Z")
_VALUE = re.compile(r"[A-Za-z0-9._:/@%+~-]*\Z")
"""What a free-text answer may hold: it lands in YAML unquoted, so no spaces, quotes, `#` or line breaks."""


def missing_packages() -> list[str]:
    """The distributions the renderer needs that this Python lacks."""
    return [dist for module, dist in RENDER_NEEDS.items() if importlib.util.find_spec(module) is None]


def _pairs(field: str, text: str, *, at_most: int | None = None) -> list[str]:
    """Problems of one `name=address, ...` answer: the starter spec's template splits it this way."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    problems = [] if items or at_most is not None else [f"{field}: give at least one name=address"]
    if at_most is not None and len(items) > at_most:
        problems.append(f"{field}: give at most {at_most} name=address, got {len(items)}")
    for item in items:
        name, sep, address = (part.strip() for part in item.partition("="))
        if not sep or not _NAME.match(name) or not _ADDRESS.match(address):
            problems.append(f"{field}: {item!r} is not name=address")
    return problems


def answer_problems(answers: dict[str, Any]) -> list[str]:
    """Why the starter spec cannot be made from these answers; the spec's own rules are checked afterwards."""
    problems = []
    if not _NAME.match(str(answers.get("cluster", ""))):
        problems.append(f"cluster: {answers.get('cluster')!r} must be lower-case letters, digits and dashes")
    problems += _pairs("nodes", str(answers.get("nodes", "")))
    problems += _pairs("witness", str(answers.get("witness", "")), at_most=1)
    for field in ("database", "user", "s3_bucket", "s3_region", "s3_endpoint"):
        value = str(answers.get(field, ""))
        if not _VALUE.match(value):
            problems.append(f"{field}: {value!r} has characters a spec value cannot hold")
    return problems


def _report(lines: list[str]) -> int:
    for line in lines:
        print(f"pgdock: {line}", file=sys.stderr)
    return 1


def check_packages() -> int:
    """The pre-prompt hook: before any question, the packages cookiecutter's Python lacks, in one line.

    Cookiecutter logs a traceback of its own when a pre- or post-generation hook fails, not when
    this one does; and nothing has been asked or written yet.
    """
    missing = missing_packages()
    if missing:
        return _report([f"the template needs the Python packages {', '.join(missing)}: "
                        f"`pip install {' '.join(missing)}` where cookiecutter is installed (or "
                        "`pip install 'pgdock-gen[template]'`), then run cookiecutter again"])
    return 0


def pre_generate(answers: dict[str, Any], project: Path) -> int:
    """Refuses bad answers, and answers that would overwrite a `cluster.yaml` made from others."""
    if problems := answer_problems(answers):
        return _report(problems)
    from . import spec as specs
    from .errors import SpecError
    from .template import starter_spec

    text = starter_spec({k: v for k, v in answers.items() if not k.startswith("_")})
    try:
        specs.parse(text, "cluster.yaml")
    except SpecError as exc:
        return _report(exc.problems)
    existing = project / "cluster.yaml"
    if existing.is_file() and existing.read_text(encoding="utf-8") != text:
        return _report([f"{existing} was made from other answers; nothing was changed. Edit it and run "
                        "`pgdock-gen render -f cluster.yaml`, or generate into another folder"])
    return 0


def post_generate(spec_path: Path) -> int:
    """Renders the cluster repo next to the spec cookiecutter wrote: the same code as `pgdock-gen render`."""
    from . import render as renderer
    from . import spec as specs
    from .errors import PgdockError, user_error

    try:
        spec = specs.load(spec_path)
        renderer.write(spec, renderer.plan(spec, spec_path.read_text(encoding="utf-8")), spec_path.parent)
    except (PgdockError, OSError) as exc:
        error = user_error(exc)
        return _report([str(error)])
    return 0
