"""Where pgdock's templates live and how they are turned into files.

There is one set of templates. `templates/cluster/` is rendered once per cluster,
`templates/node/` once per node and the witness; names ending in `.j2` are
rendered with Jinja, others copied, `dot-x` becomes `.x`. The starter spec is the
cookiecutter template's `cluster.yaml`, so `pgdock-gen init` and `cookiecutter`
ask the same questions with the same defaults.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from . import contract
from .errors import PgdockError

# pip and pipx install a package as a plain folder, so its resources are real paths
# (Jinja's loader and the image build need those). In a checkout `assets/` holds
# symlinks to the top-level folders, which keep the template repo's layout; a wheel
# holds copies of them.
PACKAGE_DIR = Path(str(resources.files(__package__)))
TEMPLATES = PACKAGE_DIR / "templates"
ASSETS = PACKAGE_DIR / "assets"
COOKIECUTTER_JSON = ASSETS / "cookiecutter.json"
STARTER_SPEC = ASSETS / "starter" / "cluster.yaml"
IMAGE_CONTEXTS = ("base-image", "backup-image")
"""Build contexts copied verbatim into every cluster repo, so a fork builds on its own."""


def image_context(name: str) -> Path:
    """The folder of one image context; refuses loudly when the installation lacks it."""
    folder = ASSETS / name
    if not (folder / "Dockerfile").is_file():
        raise PgdockError(
            f"this pgdock-gen installation lacks its {name}/ folder ({folder}); reinstall the package"
        )
    return folder


def _pg_value(value: Any) -> str:
    """A postgresql.conf value: numbers and booleans bare, everything else quoted."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return contract.conf_string(str(value))


def _duration(span: dt.timedelta) -> str:
    """A span as people read it in a README or a comment: whole days, else whole hours, else minutes."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds / 60:g} min"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["pg_value"] = _pg_value
    env.filters["quote_ident"] = _quote_ident
    env.filters["duration"] = _duration
    env.globals["c"] = contract  # names that cross into the containers: env vars, paths
    return env


def output_name(relative: Path) -> Path:
    """The path a template produces: drops `.j2`, turns `dot-x` into `.x` in every part (`dot-github/` is
    `.github/`: hidden files in the template tree would hide from packaging and from people)."""
    parts = ["." + part[4:] if part.startswith("dot-") else part for part in relative.parts]
    return Path(*parts[:-1], parts[-1].removesuffix(".j2"))


def pgdock_version() -> str:
    """The version of pgdock-gen doing the rendering: the installed distribution's, or in a source checkout
    that was never installed (cookiecutter straight from a clone), the version its pyproject.toml declares."""
    from importlib import metadata

    try:
        return metadata.version("pgdock-gen")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = PACKAGE_DIR.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            raise PgdockError("cannot tell which pgdock-gen version this is (not installed, no pyproject.toml); "
                              "install it with pip") from None


def files_under(folder: Path) -> list[Path]:
    """Files below `folder`, sorted, without caches: the order makes renders deterministic."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def cookiecutter_defaults() -> dict[str, Any]:
    """cookiecutter.json's answers as cookiecutter would default them (a list means its first item)."""
    raw = json.loads(COOKIECUTTER_JSON.read_text(encoding="utf-8"))
    return {k: (v[0] if isinstance(v, list) else v) for k, v in raw.items() if not k.startswith("_")}


def starter_spec(answers: dict[str, Any] | None = None) -> str:
    """The commented starter `cluster.yaml`, from the same file cookiecutter renders."""
    context = {**cookiecutter_defaults(), **(answers or {})}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(STARTER_SPEC.read_text(encoding="utf-8")).render(cookiecutter=context)
