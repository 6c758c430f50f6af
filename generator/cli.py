"""`pgdock-gen`: the command line. Each command parses options and calls one module.

Heavy modules (jsonschema, cryptography, python-on-whales, psycopg) are imported
inside the commands, so `pgdock-gen --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import PgdockError

SPEC_OPTION = click.option(
    "-f", "--file", "spec_path", type=click.Path(path_type=Path), default=Path("cluster.yaml"),
    show_default=True, help="Cluster spec.",
)


def _load(spec_path: Path):
    from . import spec

    return spec.load(spec_path)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pgdock")
def cli() -> None:
    """pgdock: highly available PostgreSQL on your own servers with Docker and repmgr.

    \b
    Example, from nothing to a cluster repo:
      pgdock-gen init cluster.yaml
      pgdock-gen render -f cluster.yaml -o shop/
    """


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("cluster.yaml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter spec to PATH.

    \b
    Example:
      pgdock-gen init prod/cluster.yaml
    """
    from .template import starter_spec

    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_spec(), encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then: pgdock-gen render -f {path} -o {path.parent}")


@cli.command()
@SPEC_OPTION
def validate(spec_path: Path) -> None:
    """Check a spec; print every problem with its line and field.

    \b
    Example:
      pgdock-gen validate -f cluster.yaml
    """
    spec = _load(spec_path)
    click.echo(f"{spec_path}: cluster {spec.cluster!r} is valid: {len(spec.nodes)} data node(s)"
               f"{', 1 witness' if spec.witness else ''}, PostgreSQL {spec.pg_version}, {spec.replication_mode}")


@cli.command()
@SPEC_OPTION
@click.option("-o", "--output", "out", type=click.Path(path_type=Path),
              help="Folder of the cluster repo (default: the spec's folder).")
@click.option("--diff", "show_diff", is_flag=True, help="Show what would change; write nothing.")
@click.option("--check", is_flag=True, help="Exit 1 when the folder is out of date with the spec; write nothing.")
@click.option("--force", is_flag=True, help="Overwrite files that differ from what the spec renders.")
def render(spec_path: Path, out: Path | None, show_diff: bool, check: bool, force: bool) -> None:
    """Write the cluster repo for a spec.

    Existing secrets are kept; files that differ from the rendering are only
    replaced with --force.

    \b
    Examples:
      pgdock-gen render -f cluster.yaml -o shop/
      pgdock-gen render -f shop/cluster.yaml --diff
      pgdock-gen render -f shop/cluster.yaml --check   # in the fork's CI
    """
    from . import render as renderer

    spec = _load(spec_path)
    out = out if out is not None else spec_path.parent
    files = renderer.plan(spec, spec_path.read_text(encoding="utf-8"))
    if check:
        renderer.check(files, out)
        click.echo(f"{out} is up to date with {spec_path}")
        return
    if show_diff:
        changes = renderer.compare(files, out)
        click.echo(renderer.diff(files, out, changes), nl=False)
        click.echo(f"{len(changes.new)} new, {len(changes.changed)} changed, {len(changes.stale)} stale", err=True)
        return
    changes = renderer.write(spec, files, out, force=force)
    click.echo(f"rendered {out}: {len(changes.new)} new, {len(changes.changed)} updated, "
               f"{len(changes.unchanged)} unchanged")
    for rel in changes.stale:
        click.echo(f"note: {rel} is no longer in the spec; remove it when that node is gone", err=True)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of cluster.yaml, for editors.

    \b
    Example (VS Code with the YAML extension):
      pgdock-gen schema > .pgdock.schema.json
      # first line of cluster.yaml: # yaml-language-server: $schema=.pgdock.schema.json
    """
    from .schema import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


def render_for_cookiecutter(spec_path: Path) -> int:
    """Called by the cookiecutter post-gen hook: renders next to the spec it wrote."""
    from . import render as renderer
    from . import spec as specs

    try:
        spec = specs.load(spec_path)
        renderer.write(spec, renderer.plan(spec, spec_path.read_text(encoding="utf-8")), spec_path.parent)
    except PgdockError as exc:
        print(f"pgdock: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PgdockError as exc:
        click.echo(f"error: {exc}" if "\n" not in str(exc) else str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
