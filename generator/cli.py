"""`pgdock-gen`: the command line. Each command parses options and calls one module.

Heavy modules (jsonschema, cryptography, python-on-whales, psycopg) are imported
inside the commands, so `pgdock-gen --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from . import contract, exits
from .errors import PgdockError, SpecError, UsageError, user_error

if TYPE_CHECKING:
    from .spec import Spec

F = TypeVar("F", bound=Callable[..., object])

SPEC_OPTION = click.option(
    "-f", "--file", "spec_path", type=click.Path(path_type=Path), default=Path("cluster.yaml"),
    show_default=True, help="Cluster spec.",
)


def _load(spec_path: Path):
    from . import spec

    return spec.load(spec_path)


def _from_spec(values: Callable[[Spec], Iterable[str]]) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """A shell completion that offers `values` of the spec given with -f (default cluster.yaml) starting
    with what was typed; nothing when that spec cannot be read (completion must never fail loudly)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            spec = _load(Path(ctx.params.get("spec_path") or "cluster.yaml"))
        except (PgdockError, OSError):
            return []
        return [value for value in dict.fromkeys(values(spec)) if value.startswith(incomplete)]

    return complete


_complete_nodes = _from_spec(lambda spec: (node.name for node in spec.members))
_complete_contexts = _from_spec(lambda spec: (node.context for node in spec.members))


NODE_ARGUMENT = click.argument("node", shell_complete=_complete_nodes)
OPTIONAL_NODE_ARGUMENT = click.argument("node", required=False, shell_complete=_complete_nodes)
NODE_ALIAS = click.option("--node", "node_option", hidden=True, shell_complete=_complete_nodes,
                          help="Same as the NODE argument (the spelling of earlier versions).")


def _node_or_alias(node: str | None, node_option: str | None) -> str | None:
    """NODE, or the hidden --node of earlier versions: scripts written for either keep working."""
    if node and node_option and node != node_option:
        raise UsageError(f"two nodes given: {node} and --node {node_option}; give one")
    return node or node_option


def _json_option(help_text: str = "Machine-readable output (docs/json.md).") -> Callable[[F], F]:
    """`--json`, spelled once: every command that has it points at docs/json.md, where the shapes are."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def _progress() -> Callable[[str], None]:
    """This command's progress reporter (bars on a terminal, plain lines otherwise: progress.py chooses),
    closed when the command ends."""
    from contextlib import closing

    from . import progress

    ctx = click.get_current_context()
    if "pgdock.progress" not in ctx.meta:
        ctx.meta["pgdock.progress"] = ctx.with_resource(closing(progress.reporter()))
    return ctx.meta["pgdock.progress"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pgdock-gen")
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
    from .render import write_file
    from .template import starter_spec

    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it")
    write_file(path, starter_spec())
    click.echo(f"wrote {path}; edit it, then: pgdock-gen render -f {path} -o {path.parent}")


@cli.command()
@SPEC_OPTION
@_json_option("Print the result as JSON, problems and warnings included (docs/json.md).")
def validate(spec_path: Path, as_json: bool) -> None:
    """Check a spec; print every problem with its line and field.

    Warnings (e.g. a primary alone in its location, which repmgr never
    fails over) go to stderr too but do not fail the check.

    \b
    Examples:
      pgdock-gen validate -f cluster.yaml
      pgdock-gen validate -f cluster.yaml --json | jq .warnings
    """
    from . import reports

    if as_json:
        try:
            click.echo(reports.dumps(reports.validate(spec_path, _load(spec_path))))
        except SpecError as exc:
            click.echo(reports.dumps(reports.validate(spec_path, None, exc.problems)))
            click.get_current_context().exit(exc.exit_code)
        return
    spec = _load(spec_path)
    for warning in spec.warnings:
        click.echo(f"warning: {warning}", err=True)
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
    if warning := renderer.version_warning(files, out):
        click.echo(f"warning: {warning}", err=True)
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
    from .schema import document

    click.echo(document(), nl=False)


def _print_status(spec, rows, as_json: bool) -> None:
    from . import cluster, reports

    if as_json:
        click.echo(reports.dumps(reports.status(spec, rows)))
    else:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(cluster.status_table(spec, rows))


MIRROR_OPTION = click.option("--mirror", help="Debian mirror URL for debootstrap when no registry image can be "
                                              "pulled (default: debootstrap's own).")


@cli.command()
@SPEC_OPTION
@click.option("--repo", type=click.Path(path_type=Path), help="Rendered cluster repo (default: the spec's folder).")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer.")
@MIRROR_OPTION
def build(spec_path: Path, repo: Path | None, no_cache: bool, mirror: str | None) -> None:
    """Build the base, backup and per-node config images of a rendered cluster repo.

    \b
    Example:
      pgdock-gen render -f cluster.yaml && pgdock-gen build -f cluster.yaml
    """
    from . import images
    from .progress import step

    spec, report = _load(spec_path), _progress()
    with step(report, f"building the images of {spec.cluster}"):
        tags = images.build_all(spec, repo or spec_path.parent, no_cache=no_cache, mirror=mirror, progress=report)
    for what, tag in tags.items():
        click.echo(f"{what:>10}  {tag}")


@cli.group("images")
def images_group() -> None:
    """Base OS images for air-gapped builds.

    \b
    Example:
      sudo pgdock-gen images bootstrap --suite trixie
    """


@images_group.command("bootstrap")
@click.option("--suite", default="trixie", show_default=True, help="Debian release.")
@MIRROR_OPTION
def images_bootstrap(suite: str, mirror: str | None) -> None:
    """Create pgdock/debian:SUITE with debootstrap + docker import (needs root).

    `build` does this by itself when `debian:SUITE-slim` cannot be pulled.

    \b
    Example:
      sudo pgdock-gen images bootstrap --suite trixie
    """
    from . import images

    click.echo(images.bootstrap(suite, f"pgdock/debian:{suite}", mirror=mirror, progress=_progress()))


@cli.group()
def lab() -> None:
    """Run the spec's cluster as containers on this machine.

    \b
    Example:
      pgdock-gen lab up -f cluster.yaml
      pgdock-gen lab kill -f cluster.yaml n1      # rehearse a failover
      pgdock-gen lab down -f cluster.yaml --volumes
    """


@lab.command("up")
@SPEC_OPTION
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for a healthy cluster.")
@click.option("--no-cache", is_flag=True, help="Rebuild images from scratch.")
@MIRROR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@click.option("--s3", is_flag=True, help="Also run an S3-protocol server and send the cluster's backups to it.")
@click.option("--monitoring", is_flag=True,
              help="Also run Prometheus (<cluster>-prometheus) with the spec's monitoring/ (needs `monitoring:` in "
                   "the spec), scraping every 5 s.")
def lab_up(spec_path: Path, timeout: int, no_cache: bool, mirror: str | None, as_json: bool, s3: bool,
           monitoring: bool) -> None:
    """Render, build and start every node; wait until healthy; print the status.

    With --monitoring, Prometheus loads the lab's monitoring/prometheus.yml and
    alerts.yml; `lab up` prints where to open it.

    \b
    Examples:
      pgdock-gen lab up -f examples/shop.yaml
      pgdock-gen lab up -f examples/shop.yaml --monitoring    # then open the http://…:9090 it prints
    """
    from . import lab as labs
    from . import lab_monitoring, lab_proxy

    spec = _load(spec_path)
    the_lab, rows = labs.up(spec_path, spec, timeout=timeout, no_cache=no_cache, mirror=mirror, s3=s3,
                            monitoring=monitoring, progress=_progress())
    _print_status(spec, rows, as_json)
    if the_lab.proxy_address and not as_json:
        click.echo(lab_proxy.where(spec, the_lab.proxy_address, spec_path))
    if monitoring and the_lab.prometheus_address and not as_json:
        click.echo(lab_monitoring.where(spec, the_lab.prometheus_address))


@lab.command("down")
@SPEC_OPTION
@click.option("--volumes", "remove_volumes", is_flag=True, help="Also delete the nodes' data.")
@click.option("--as", "name", help="A lab cluster made from this spec under another name (e.g. by restore).")
def lab_down(spec_path: Path, remove_volumes: bool, name: str | None) -> None:
    """Stop and remove the lab's containers (and with --volumes its data).

    \b
    Examples:
      pgdock-gen lab down -f cluster.yaml --volumes
      pgdock-gen lab down -f cluster.yaml --as shop-restore --volumes
    """
    from . import lab as labs
    from .spec import parse

    spec = _load(spec_path)
    if name:
        spec = parse(json.dumps(dict(spec.raw, cluster=name)), f"{spec_path} (as {name})")
    labs.down(spec_path, spec, remove_volumes=remove_volumes, progress=_progress())


def _lab_node_command(action: str, doc: str) -> None:
    @lab.command(action, help=f"{doc}\n\n\b\nExample:\n  pgdock-gen lab {action} -f cluster.yaml n1")
    @SPEC_OPTION
    @NODE_ARGUMENT
    def command(spec_path: Path, node: str) -> None:
        from . import lab as labs

        labs.container_action(_load(spec_path), node, action)
        click.echo(f"{action}: {node}")


for _action, _doc in (("stop", "Stop a node's container cleanly (SIGTERM, fast shutdown)."),
                      ("start", "Start a stopped node's container."),
                      ("kill", "Kill a node's container (SIGKILL), as a crash would."),
                      ("heal", "End a node's isolation, whichever --partition made it.")):
    _lab_node_command(_action, _doc)


PARTITION_OPTION = click.option(
    "--partition", type=click.Choice(["drop", "reject", "disconnect"]), default="drop", show_default=True,
    help="How the node is cut off: drop = its packets vanish both ways, so connects hang until their timeout "
         "(a real network failure); reject = connects are refused at once (TCP reset); disconnect = its "
         "container leaves the lab network. drop and reject filter inside the node's network namespace "
         "(iptables via nsenter; needs root on the Docker host).")


@lab.command("isolate")
@SPEC_OPTION
@PARTITION_OPTION
@NODE_ARGUMENT
def lab_isolate(spec_path: Path, partition: str, node: str) -> None:
    """Cut a node off from every other node; it keeps running. `lab heal` ends it.

    Isolating again replaces the partition (e.g. drop by reject); a restart of
    the node's container ends a drop or reject partition.

    \b
    Examples:
      pgdock-gen lab isolate -f cluster.yaml n1                     # packets vanish
      pgdock-gen lab isolate -f cluster.yaml --partition reject n2  # connects refused
      pgdock-gen lab heal -f cluster.yaml n1
    """
    from . import lab as labs

    labs.container_action(_load(spec_path), node, "isolate", partition)
    click.echo(f"isolate ({partition}): {node}")


LAB_OPTION = click.option("--lab", "in_lab", is_flag=True,
                          help="The cluster runs in the local lab (default: on its nodes' docker contexts).")


@cli.command(help=f"""Role, upstream, timeline, lag and health of every node, and a verdict.

The exit status is the verdict, for scripts and monitoring:

\b
{exits.help_text()}

\b
Examples:
  pgdock-gen status -f cluster.yaml
  pgdock-gen status -f cluster.yaml --lab --json
  pgdock-gen status -f cluster.yaml --watch
  pgdock-gen status -f cluster.yaml > /dev/null || echo "exit $?: see pgdock-gen status"
""")
@SPEC_OPTION
@LAB_OPTION
@_json_option()
@click.option("--watch", is_flag=True, help="Redraw the table and the last events every 2 s until Ctrl-C.")
def status(spec_path: Path, in_lab: bool, as_json: bool, watch: bool) -> None:
    """(The help is above: it lists exits.MEANINGS, so the codes are spelled in one place.) The exit status
    is the verdict, so monitoring can branch on it without parsing the table."""
    from . import cluster

    spec = _load(spec_path)
    if watch:
        if as_json:
            raise UsageError("--watch redraws a table; leave out --json (or run status --json in a loop)")
        from . import watch as live

        click.get_current_context().exit(live.run(cluster.Running(spec, in_lab)))
    rows = cluster.Running(spec, in_lab).status()
    _print_status(spec, rows, as_json)
    click.get_current_context().exit(cluster.verdict(spec, rows).exit_code)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@NODE_ARGUMENT
@click.option("-c", "--command", "sql", help="Run one statement and print its result.")
@click.option("-d", "--dbname", help="Database (default: the application database).")
def psql(spec_path: Path, in_lab: bool, node: str, sql: str | None, dbname: str | None) -> None:
    """psql on NODE as the superuser.

    \b
    Examples:
      pgdock-gen psql -f cluster.yaml --lab n1 -c 'select pg_is_in_recovery()'
      pgdock-gen psql -f cluster.yaml n2
    """
    from . import cluster

    spec = _load(spec_path)
    target = cluster.Running(spec, in_lab).target(spec.member(node).name)
    click.echo(cluster.psql(spec, target, sql, dbname), nl=False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@_json_option("One JSON object per line, each with its format (docs/json.md).")
def events(spec_path: Path, in_lab: bool, as_json: bool) -> None:
    """Every node's events (failovers, switchovers, rejoins, hooks, fencing), oldest first.

    \b
    Examples:
      pgdock-gen events -f cluster.yaml --lab
      pgdock-gen events -f cluster.yaml --json | jq -c 'select(.success | not)'
    """
    from . import cluster, reports
    from . import events as event_log

    spec = _load(spec_path)
    found = event_log.collect(cluster.Running(spec, in_lab))
    if as_json:
        for event in found:
            click.echo(reports.dumps(reports.event(event), lines=True))
        return
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(event_log.table(spec, found))


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@NODE_ARGUMENT
@click.option("--force", is_flag=True, help="Switch over even when NODE lags or the checks fail.")
def switchover(spec_path: Path, in_lab: bool, node: str, force: bool) -> None:
    """Make NODE the primary, gracefully: the old primary rejoins as a standby by pg_rewind.

    \b
    Example:
      pgdock-gen switchover -f cluster.yaml n2
    """
    from . import cluster
    from . import switchover as planned

    spec = _load(spec_path)
    rows = planned.switchover(cluster.Running(spec, in_lab), node, force=force, progress=_progress())
    _print_status(spec, rows, False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@click.option("--readonly", is_flag=True, help="For readers: prefer standbys, spread over them.")
@click.option("--proxy", "proxy_host", is_flag=False, flag_value="", default=None, metavar="HOST",
              help="Through the HAProxy of proxy/ on HOST (an IP address; without it localhost, or with --lab "
                   "the lab's proxy container).")
def dsn(spec_path: Path, in_lab: bool, readonly: bool, proxy_host: str | None) -> None:
    """Print a libpq multi-host URI that always reaches the primary (or a standby with --readonly).

    With --proxy, the URI goes through the cluster's HAProxy (the spec's `proxy`
    section, run from proxy/ on an app host), for drivers without target_session_attrs.
    With --lab, the URI reaches the lab cluster (its addresses, its CA file).

    \b
    Examples:
      psql "$(pgdock-gen dsn -f cluster.yaml)"
      pgdock-gen dsn -f cluster.yaml --proxy --readonly      # HAProxy on this host, a standby
      pgdock-gen dsn -f cluster.yaml --lab --proxy           # the lab's HAProxy container
    """
    from . import dsn as uris

    spec, ca_file, default_proxy = _load(spec_path), uris.CA_FILE, uris.PROXY_NAME
    if in_lab:
        the_lab = _lab_of(spec_path, spec)
        spec, ca_file = the_lab.lab_spec, str(the_lab.repo / uris.CA_FILE)
        default_proxy = the_lab.proxy_address or default_proxy
    if proxy_host is not None:
        click.echo(uris.proxy_uri(spec, proxy_host or default_proxy, readonly=readonly, ca_file=ca_file))
    else:
        click.echo(uris.uri(spec, readonly=readonly, ca_file=ca_file))


@cli.command()
@SPEC_OPTION
@click.option("--scenario", type=click.Choice(["kill-primary", "isolate-primary", "kill-standby", "restart-all",
                                               "switchover"]), default="kill-primary", show_default=True)
@PARTITION_OPTION
@_json_option()
def drill(spec_path: Path, scenario: str, partition: str, as_json: bool) -> None:
    """Rehearse a failure on the lab cluster under a write load and report what it cost.

    Reports the time until writes succeed again, acknowledged commits lost, and
    whether two nodes ever accepted writes at the same moment. --partition is
    how isolate-primary cuts the primary off (see `lab isolate --help`).

    \b
    Examples:
      pgdock-gen lab up -f cluster.yaml && pgdock-gen drill -f cluster.yaml --scenario isolate-primary
      pgdock-gen drill -f cluster.yaml --scenario isolate-primary --partition reject --json
    """
    from . import drill as drills
    from . import lab as labs
    from . import reports

    spec = _load(spec_path)
    report = drills.run(labs.prepare(spec_path, spec), scenario, partition=partition, progress=_progress())
    if as_json:
        click.echo(reports.dumps(reports.drill(report)))
        return
    for key, value in report.as_dict().items():
        click.echo(f"{key:>24}: {value}")


def _lab_of(spec_path: Path, spec):
    """The spec's lab as it runs: rendered again with its S3 server when one runs, so nothing changes."""
    from . import docker
    from . import lab as labs

    with_s3 = docker.client().container.exists(contract.lab_s3_container(spec.cluster))
    return labs.prepare(spec_path, spec, s3=with_s3)


def _cluster_secrets(spec_path: Path, in_lab: bool):
    """The spec and secrets folder of this cluster (the lab's when --lab): backups and rotations use them."""
    spec = _load(spec_path)
    if not in_lab:
        return spec, spec_path.parent / "secrets"
    the_lab = _lab_of(spec_path, spec)
    return the_lab.lab_spec, the_lab.repo / "secrets"


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@click.option("--password", "passwords", multiple=True, type=click.Choice(contract.PASSWORD_FILES),
              help="A password to replace (repeatable).")
@click.option("--certificates", is_flag=True, help="New keys and certificates for every node (the CA stays).")
def rotate(spec_path: Path, in_lab: bool, passwords: tuple[str, ...], certificates: bool) -> None:
    """Replace passwords and node certificates of the running cluster, without a restart.

    The new values go to secrets/ first, then into the database, then to every node.

    \b
    Example:
      pgdock-gen rotate -f cluster.yaml --password repmgr --password app --certificates
    """
    from . import cluster
    from . import rotate as rotation

    spec, secrets = _cluster_secrets(spec_path, in_lab)
    for note in rotation.rotate(cluster.Running(spec, in_lab), secrets, passwords=passwords,
                                certificates=certificates, progress=_progress()):
        click.echo(note)
    click.echo("rotated: " + ", ".join([*passwords, *(["certificates"] if certificates else [])]))


@cli.group("backup")
def backup_group() -> None:
    """Base backups and WAL in S3 (barman-cloud).

    \b
    Examples:
      pgdock-gen backup now -f cluster.yaml
      pgdock-gen backup list -f cluster.yaml
      pgdock-gen backup check -f cluster.yaml --max-backup-age 26h --max-wal-age 10m
    """


@backup_group.command("now")
@SPEC_OPTION
@LAB_OPTION
def backup_now(spec_path: Path, in_lab: bool) -> None:
    """Take a base backup on the primary now (then apply retention).

    \b
    Example:
      pgdock-gen backup now -f cluster.yaml
    """
    from . import backup, cluster

    spec, secrets = _cluster_secrets(spec_path, in_lab)
    click.echo(backup.run_on_primary(cluster.Running(spec, in_lab), _progress(), secrets))


@backup_group.command("list")
@SPEC_OPTION
@LAB_OPTION
@_json_option()
def backup_list(spec_path: Path, in_lab: bool, as_json: bool) -> None:
    """Base backups (time, size, WAL range) and the newest archived WAL.

    \b
    Examples:
      pgdock-gen backup list -f cluster.yaml
      pgdock-gen backup list -f cluster.yaml --json | jq '.backups[-1].end_time'
    """
    from . import backup, reports

    spec, secrets = _cluster_secrets(spec_path, in_lab)
    loc = backup.location(spec)
    s3 = backup.client(loc, backup.credentials(secrets))
    backups, wal = backup.list_backups(s3, loc), backup.newest_wal(s3, loc)
    if as_json:
        click.echo(reports.dumps(reports.backups(loc, backups, wal)))
        return
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(backup.table(loc, backups))
    console.print(f"newest WAL: {wal[0]} stored {wal[1]:%Y-%m-%d %H:%M:%S} UTC" if wal else "no archived WAL yet")


def _duration(text: str) -> object:
    import datetime as dt

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return dt.timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: use a number with s, m, h or d, e.g. 26h") from None


@backup_group.command("check")
@SPEC_OPTION
@LAB_OPTION
@click.option("--max-backup-age", default="26h", show_default=True, help="Newest base backup may be this old.")
@click.option("--max-wal-age", default="10m", show_default=True, help="Newest archived WAL may be this old.")
def backup_check(spec_path: Path, in_lab: bool, max_backup_age: str, max_wal_age: str) -> None:
    """Exit 1 with the reason when backups are stale or missing (for monitoring).

    \b
    Example:
      pgdock-gen backup check -f cluster.yaml --max-wal-age 5m || alert
    """
    from . import backup

    spec, secrets = _cluster_secrets(spec_path, in_lab)
    loc = backup.location(spec)
    found = backup.problems(backup.client(loc, backup.credentials(secrets)), loc, spec.pg_version,
                            max_backup_age=_duration(max_backup_age), max_wal_age=_duration(max_wal_age))
    if found:
        raise PgdockError("backup check failed: " + "; ".join(found))
    click.echo(f"backups of {spec.cluster} in {loc.url} are fresh")


@cli.command()
@SPEC_OPTION
@click.option("--to", "to", help="Point in time to restore to, e.g. '2026-11-25 17:03:00+00' (UTC if no zone).")
@click.option("--latest", is_flag=True, help="Restore everything archived.")
@click.option("--as", "name", help="Name of the new lab cluster (default: <cluster>-restore).")
@click.option("--timeout", default=900, show_default=True, help="Seconds to wait for the restored cluster.")
def restore(spec_path: Path, to: str | None, latest: bool, name: str | None, timeout: int) -> None:
    """Restore the cluster's backups into a NEW lab cluster and verify it reached the target.

    \b
    Examples:
      pgdock-gen restore -f cluster.yaml --latest
      pgdock-gen restore -f cluster.yaml --to '2026-11-25 17:03:00+00' --as shop-check
    """
    from . import restore as restores

    spec = _load(spec_path)
    result = restores.restore(spec_path, spec, to=to, latest=latest, name=name, timeout=timeout,
                              progress=_progress())
    click.echo(f"restored into lab cluster {result.lab.spec.cluster}: target {result.target}, "
               f"last replayed commit {result.recovered_to}")
    _print_status(result.lab.lab_spec, result.lab.running.status(), False)


def _nodes(spec, node: str | None, context: str | None, every: bool) -> list:
    """The members a deploy-like command acts on: NODE, --context or --all (exactly one)."""
    if sum(map(bool, (node, context, every))) != 1:
        raise UsageError("choose the nodes with exactly one of NODE, --context NAME or --all")
    if every:
        return list(spec.members)
    if node:
        return [spec.member(node)]
    chosen = [n for n in spec.members if n.context == context]
    if not chosen:
        raise UsageError(f"no node of {spec.cluster!r} uses context {context!r}; contexts: "
                         f"{', '.join(sorted({n.context for n in spec.members}))}")
    return chosen


NODE_OPTIONS = [
    OPTIONAL_NODE_ARGUMENT,
    NODE_ALIAS,
    click.option("--context", "context_name", shell_complete=_complete_contexts,
                 help="The node(s) deployed through this docker context."),
    click.option("--all", "every", is_flag=True, help="Every node and the witness."),
]
"""`[NODE] [--context C | --all]`: how a command that may act on several nodes chooses them."""


def _with_node_options(fn: F) -> F:
    for option in reversed(NODE_OPTIONS):
        fn = option(fn)
    return fn


@cli.command()
@SPEC_OPTION
@click.option("--user", default="root", show_default=True, help="ssh user for contexts that do not exist yet.")
@_json_option()
def contexts(spec_path: Path, user: str, as_json: bool) -> None:
    """Create missing Docker contexts (ssh://USER@ADDRESS) and test every node's engine.

    Exits 1 when a node's engine cannot be reached (after printing every node, in JSON too).

    \b
    Examples:
      pgdock-gen contexts -f cluster.yaml --user deploy
      pgdock-gen contexts -f cluster.yaml --json | jq -r '.nodes[] | select(.problem) | .node'
    """
    from . import contexts as ctx
    from . import reports

    spec = _load(spec_path)
    checks = ctx.check_all(spec, user)
    if as_json:
        click.echo(reports.dumps(reports.contexts(checks)))
    for c in [] if as_json else checks:
        state = f"ok, Docker {c.engine}" if c.problem is None else f"FAILED: {c.problem}"
        click.echo(f"{c.node:>12}  context {c.context}{' (created)' if c.created else ''} -> {c.endpoint}: {state}")
    bad = [c.node for c in checks if c.problem]
    if bad:
        raise PgdockError(f"{len(bad)} node(s) not reachable through Docker: {', '.join(bad)}")


@cli.command()
@SPEC_OPTION
@click.option("--registry", help="Push through this registry instead of streaming (docker save | load).")
def push(spec_path: Path, registry: str | None) -> None:
    """Send the built images to every node's engine, skipping what a node already has.

    \b
    Examples:
      pgdock-gen push -f cluster.yaml
      pgdock-gen push -f cluster.yaml --registry registry.example.net:5000
    """
    from . import docker, images, ship

    spec = _load(spec_path)
    repo = spec_path.parent
    names = images.names(spec, repo)
    for node in spec.members:
        tags = [names.base, f"{names.config_repo(node)}:{images.config_version(repo, node)}"]
        tags += [names.backup] if spec.backup and not node.witness else []
        sent = ship.ship(docker.client(node.context), tags, node=node.name, registry=registry, progress=_progress())
        click.echo(f"{node.name}: {len(sent)} image(s) sent, {len(tags) - len(sent)} already there")


@cli.command()
@SPEC_OPTION
@_with_node_options
@click.option("--version", "version", help="Put back a recorded config version (vN), e.g. to roll back.")
@click.option("--restart", "allow_restart", is_flag=True,
              help="Restart where a change needs it (standbys first; the primary after a switchover).")
@click.option("--force", is_flag=True, help="Deploy even if the node runs a version this repo does not know.")
@click.option("--registry", help="Ship images through this registry.")
@click.option("--dry-run", is_flag=True, help="Print what would be done on which context; change nothing.")
@_json_option("With --dry-run: the plan as JSON (docs/json.md).")
def deploy(spec_path: Path, node: str | None, node_option: str | None, context_name: str | None, every: bool,
           version: str | None, allow_restart: bool, force: bool, registry: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Install the rendered config on NODE (or every node of --context, or --all) with the least disruption.

    \b
    Examples:
      pgdock-gen deploy -f cluster.yaml n2
      pgdock-gen deploy -f cluster.yaml --context n2
      pgdock-gen deploy -f cluster.yaml --all --restart
      pgdock-gen deploy -f cluster.yaml n1 --version v3     # roll back
      pgdock-gen deploy -f cluster.yaml --all --dry-run --json
    """
    from . import deploy as deploys

    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run (a deploy itself reports in lines)")
    spec = _load(spec_path)
    repo = spec_path.parent
    chosen = _nodes(spec, _node_or_alias(node, node_option), context_name, every)
    if dry_run:
        plans = [deploys.plan(spec, repo, target, version=version, force=force) for target in chosen]
        if as_json:
            from . import reports

            click.echo(reports.dumps(reports.deploy_plan(plans)))
            return
        for the_plan in plans:
            target = the_plan.node
            click.echo(f"{target.name} (context {the_plan.context}), config {the_plan.version}:")
            for step in the_plan.steps:
                click.echo(f"  - {step}")
        return
    sequence = deploys.order(spec, chosen) if len(chosen) > 1 else chosen
    if not version and any(deploys.plan(spec, repo, n, version=None, force=force).first for n in chosen):
        # a new member: the running nodes must first accept it (pg_hba, peers), by a reload
        running = [n for n in spec.members if n not in chosen and deploys.history(spec, n)]
        sequence = deploys.order(spec, running) + chosen
    for target in sequence:
        pending = deploys.deploy_node(spec, repo, target, version=version, force=force,
                                      allow_restart=allow_restart, registry=registry, progress=_progress())
        if pending:
            click.echo(f"{target.name}: applied, but {', '.join(pending)} take effect only after a restart: "
                       "re-run with --restart")
        else:
            click.echo(f"{target.name}: applied")


@cli.command()
@SPEC_OPTION
@click.option("--registry", help="Ship images through this registry.")
def up(spec_path: Path, registry: str | None) -> None:
    """Bring a whole new cluster up across its contexts: primary first, then the others.

    \b
    Example:
      pgdock-gen render -f cluster.yaml && pgdock-gen build -f cluster.yaml && pgdock-gen up -f cluster.yaml
    """
    from . import cluster
    from . import deploy as deploys

    spec = _load(spec_path)
    deploys.up(spec, spec_path.parent, registry=registry, progress=_progress())
    _print_status(spec, cluster.Running(spec, False).status(), False)


@cli.command()
@SPEC_OPTION
@OPTIONAL_NODE_ARGUMENT
@NODE_ALIAS
@click.option("--volumes", "remove_volumes", is_flag=True, help="Also delete the data (asks first).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def down(spec_path: Path, node: str | None, node_option: str | None, remove_volumes: bool, yes: bool) -> None:
    """Stop and remove NODE's (without NODE: every node's) containers; with --volumes also its data.

    \b
    Example:
      pgdock-gen down -f cluster.yaml n3 --volumes --yes
    """
    from . import deploy as deploys

    spec = _load(spec_path)
    node = _node_or_alias(node, node_option)
    nodes = [spec.member(node)] if node else list(spec.members)
    if remove_volumes and not yes:
        names = ", ".join(n.name for n in nodes)
        click.confirm(f"Delete the data of {names} for good?", abort=True)
    deploys.down(spec, nodes, remove_volumes=remove_volumes, progress=_progress())


@cli.command("history")
@SPEC_OPTION
@OPTIONAL_NODE_ARGUMENT
@NODE_ALIAS
@_json_option()
def history_command(spec_path: Path, node: str | None, node_option: str | None, as_json: bool) -> None:
    """The config versions deployed on NODE: version, time, operator.

    \b
    Examples:
      pgdock-gen history -f cluster.yaml n1
      pgdock-gen history -f cluster.yaml n1 --json | jq -r '.deployments[-1].version'
    """
    from . import deploy as deploys

    node = _node_or_alias(node, node_option)
    if node is None:
        raise UsageError("name the node: pgdock-gen history NODE")
    spec = _load(spec_path)
    member = spec.member(node)
    entries = deploys.history(spec, member)
    if as_json:
        from . import reports

        click.echo(reports.dumps(reports.history(member.name, entries)))
        return
    for entry in entries:
        extra = " (rollback)" if entry.get("rollback") else ""
        waiting = f"; waiting for restart: {', '.join(entry['pending_restart'])}" if entry.get("pending_restart") \
            else ""
        click.echo(f"{entry['version']:>5}  {entry['time']}  {entry['operator']}  config {entry['config']}  "
                   f"spec {entry['spec']}{extra}{waiting}")


# ---------------------------------------------------------------- day-2 operations: pause, resume, failover,
# reinit, remove, restart (each plans from the observed status, prints the plan, asks, then applies)

DRY_RUN_OPTION = click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
YES_OPTION = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def _go(steps, dry_run: bool, question: str | None = None, yes: bool = False) -> bool:
    """Prints the plan; False for --dry-run; asks `question` unless --yes."""
    for step in steps:
        click.echo(f"  - {step}")
    if dry_run:
        return False
    if question and not yes:
        click.confirm(question, abort=True)
    return True


def _pause_command(pause: bool):
    verb = "pause" if pause else "resume"
    doc = ("Maintenance mode: no automatic failover anywhere (repmgrd paused on every node, and a pause flag the "
           "promotion gate honours); fencing still protects against split brain. The pause survives node "
           "restarts; `resume` re-arms every node." if pause else
           "End maintenance mode: remove every node's pause flag and unpause repmgrd (re-arm automatic failover).")

    @cli.command(verb, help=f"{doc}\n\n\b\nExample:\n  pgdock-gen {verb} -f cluster.yaml")
    @SPEC_OPTION
    @LAB_OPTION
    @DRY_RUN_OPTION
    def command(spec_path: Path, in_lab: bool, dry_run: bool) -> None:
        from . import cluster, maintenance

        spec = _load(spec_path)
        running = cluster.Running(spec, in_lab)
        steps = maintenance.prepare(running, pause=pause)
        if _go(steps, dry_run):
            _print_status(spec, maintenance.apply(running, steps, pause=pause, progress=_progress()), False)


_pause_command(True)
_pause_command(False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@NODE_ARGUMENT
@click.option("--force", is_flag=True, help="Promote even when automatic failover is armed or NODE is behind "
                                            "another standby.")
@DRY_RUN_OPTION
@YES_OPTION
def failover(spec_path: Path, in_lab: bool, node: str, force: bool, dry_run: bool, yes: bool) -> None:
    """Promote NODE by hand when no primary runs, as while paused; the other standbys follow it.

    Refused while a primary answers (use switchover). The old primary rejoins
    as a standby by pg_rewind when it starts again.

    \b
    Example:
      pgdock-gen pause -f cluster.yaml && pgdock-gen failover -f cluster.yaml n2
    """
    from . import cluster
    from . import failover as manual

    spec = _load(spec_path)
    running = cluster.Running(spec, in_lab)
    steps = manual.prepare(running, node, force=force)
    if _go(steps, dry_run, f"Promote {node}?", yes):
        _print_status(spec, manual.apply(running, node, steps, progress=_progress()), False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@NODE_ARGUMENT
@click.option("--timeout", default=1800, show_default=True, help="Seconds to wait for the new clone.")
@DRY_RUN_OPTION
@YES_OPTION
def reinit(spec_path: Path, in_lab: bool, node: str, timeout: int, dry_run: bool, yes: bool) -> None:
    """Clone standby NODE again from the primary (a broken or diverged data directory).

    Config, secrets and the node's event log are kept; the primary is refused.

    \b
    Example:
      pgdock-gen reinit -f cluster.yaml n3
    """
    from . import cluster
    from . import reinit as reinits

    spec = _load(spec_path)
    running = cluster.Running(spec, in_lab)
    steps = reinits.prepare(running, node)
    if _go(steps, dry_run, f"Delete {node}'s data directory and clone it again?", yes):
        _print_status(spec, reinits.apply(running, node, steps, progress=_progress(), timeout=timeout), False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@NODE_ARGUMENT
@click.option("--volumes", "remove_volumes", is_flag=True, help="Also delete the node's data.")
@DRY_RUN_OPTION
@YES_OPTION
def remove(spec_path: Path, in_lab: bool, node: str, remove_volumes: bool, dry_run: bool, yes: bool) -> None:
    """Take standby or witness NODE out of the cluster: stop it, unregister it, free its slot.

    The primary is refused (switch over first). Then drop NODE from the spec
    and render again.

    \b
    Example:
      pgdock-gen remove -f cluster.yaml n3 --volumes
    """
    from . import maintenance
    from . import remove as removal

    spec = _load(spec_path)
    place = maintenance.place(spec_path, spec, in_lab)
    steps = removal.prepare(place, node, remove_volumes=remove_volumes)
    question = f"Remove {node} from cluster {spec.cluster}" + (" and delete its data for good?" if remove_volumes
                                                                else "?")
    if _go(steps, dry_run, question, yes):
        for note in removal.apply(place, node, steps, remove_volumes=remove_volumes, progress=_progress()):
            click.echo(note)


@cli.command("restart")
@SPEC_OPTION
@LAB_OPTION
@OPTIONAL_NODE_ARGUMENT
@click.option("--all", "every", is_flag=True, help="Every node: standbys and witness, then the primary.")
@click.option("--timeout", default=600, show_default=True, help="Seconds each node may take to come back.")
@DRY_RUN_OPTION
@YES_OPTION
def restart_command(spec_path: Path, in_lab: bool, node: str | None, every: bool, timeout: int, dry_run: bool,
                    yes: bool) -> None:
    """Rolling restart onto the current images: standbys one by one, a switchover, then the old primary.

    Containers are recreated, so after `build` (and `push`) a new base image
    rolls out; each node must be back streaming before the next goes.

    \b
    Examples:
      pgdock-gen build -f cluster.yaml && pgdock-gen push -f cluster.yaml && pgdock-gen restart -f cluster.yaml --all
      pgdock-gen restart -f cluster.yaml n2
    """
    from . import maintenance
    from . import restart as rolling

    if bool(node) == every:
        raise click.UsageError("name one NODE or pass --all")
    spec = _load(spec_path)
    place = maintenance.place(spec_path, spec, in_lab)
    nodes = [n.name for n in spec.members] if every else [spec.member(node).name]
    steps = rolling.prepare(place, nodes)
    if _go(steps, dry_run, f"Restart {', '.join(nodes)}?", yes):
        _print_status(place.running.spec, rolling.apply(place, steps, progress=_progress(), timeout=timeout), False)


@cli.command()
@SPEC_OPTION
@LAB_OPTION
@click.option("--check", "check_only", is_flag=True, help="Only check (pg_upgrade --check on the live primary, free "
                                                         "space, expected downtime); change nothing.")
@click.option("--finish", is_flag=True, help="Delete the old major's data directory (data.old) on every data node.")
@MIRROR_OPTION
@YES_OPTION
def upgrade(spec_path: Path, in_lab: bool, check_only: bool, finish: bool, mirror: str | None, yes: bool) -> None:
    """Major upgrade in place to the spec's postgres.version (15 → 17), with pg_upgrade.

    Set postgres.version to the new major, then check, upgrade, and once the
    new cluster has proven itself, finish. Before the point of no return (the
    swap of the primary's data directory) any failure rolls back to the old
    major; after it the old data stays in data.old until --finish (with
    upgrade.method copy or clone, an untouched rollback copy). Automatic
    failover is paused for the upgrade; with --link (the default) caught-up
    standbys come over by rsync --hard-links, others are cloned again, and
    the witness is made anew. On servers the new images go through each
    node's context, as `deploy` sends them.

    \b
    Examples:
      pgdock-gen upgrade -f cluster.yaml --lab --check
      pgdock-gen upgrade -f cluster.yaml --yes
      pgdock-gen upgrade -f cluster.yaml --finish
    """
    from . import upgrade as major

    if check_only and finish:
        raise click.UsageError("--check and --finish do not go together")
    spec = _load(spec_path)
    progress = _progress()
    if finish:
        for note in major.finish(spec_path, spec, in_lab=in_lab, progress=progress):
            click.echo(note)
        return
    prepared = major.prepare(spec_path, spec, in_lab=in_lab, mirror=mirror, progress=progress)
    for line in major.check(prepared, progress):
        click.echo(line)
    if check_only:
        return
    if not yes:
        click.confirm(f"Upgrade cluster {spec.cluster} from PostgreSQL {prepared.old} to {prepared.new}? Writes stop "
                      "until the primary runs the new major", abort=True)
    downtime = major.upgrade(prepared, progress)
    click.echo(f"upgraded to PostgreSQL {prepared.new}; write downtime {downtime:.1f} s. The old data stays in "
               f"{contract.UPGRADE_OLD} until `pgdock-gen upgrade -f {spec_path}{' --lab' if in_lab else ''} --finish`")


def main() -> None:
    try:
        # the name fixed: usage lines and the completion variable (_PGDOCK_GEN_COMPLETE) are the same under
        # `python -m pgdock_gen`; a command's ctx.exit(code) comes back as `code` (status)
        code = cli.main(prog_name="pgdock-gen", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (PgdockError, OSError) as exc:  # an OSError no command expected: still one line, no traceback
        error = user_error(exc)
        click.echo(f"error: {error}" if "\n" not in str(error) else str(error), err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
