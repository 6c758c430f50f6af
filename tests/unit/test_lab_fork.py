"""The lab runs the fork (issue 9): a rendered repo's own `shared/` files reach the lab's repo.

`lab.prepare` is run for real except for the one Docker question it asks (a free subnet), so the
files the lab would build its config carriers from are checked without an engine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgdock_gen import images, lab, spec

from .conftest import render_spec, tree

HOOK = "#!/bin/sh\necho \"$1\" >> /var/lib/pgdock/user-hook.log\n"
EXTRA_SQL = "CREATE TABLE extra (id int);\n"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "_subnet", lambda client, network, name: "172.28.7.0/24")


def prepare(spec_path: Path) -> lab.Lab:
    return lab.prepare(spec_path, spec.load(spec_path), client=object())


@pytest.fixture
def fork(shop_repo: Path) -> Path:
    """examples/shop.yaml rendered, then changed by its user: a hook, extra SQL, an edited rendered file."""
    hook = shop_repo / "shared" / "failover" / "user-hook"
    hook.write_text(HOOK)
    hook.chmod(0o750)
    (shop_repo / "shared" / "initdb" / "extra.sql").write_text(EXTRA_SQL)
    initdb = shop_repo / "shared" / "initdb" / "initdb.sql"
    initdb.write_text(initdb.read_text() + "-- mine\n")
    return shop_repo


def test_a_rendered_repo_is_recognised(shop_repo: Path, tmp_path: Path, shop_spec_text: str) -> None:
    assert lab.rendered_repo(shop_repo)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "cluster.yaml").write_text(shop_spec_text)
    (bare / "shared").mkdir()  # a shared/ alone is not a cluster repo
    assert not lab.rendered_repo(bare)
    assert not lab.rendered_repo(Path(__file__).resolve().parents[2] / "examples")


def test_overlay_copies_additions_and_edits_keeping_modes(fork: Path, tmp_path: Path, shop_spec_text: str) -> None:
    target = tmp_path / "lab-repo"
    render_spec(shop_spec_text, target)
    taken = lab.overlay_shared(fork, target)
    hook = target / "shared" / "failover" / "user-hook"
    assert hook.read_text() == HOOK
    assert stat.S_IMODE(hook.stat().st_mode) == 0o750
    assert (target / "shared" / "initdb" / "extra.sql").read_text() == EXTRA_SQL
    assert (target / "shared" / "initdb" / "initdb.sql").read_text().endswith("-- mine\n")
    assert {"shared/failover/user-hook", "shared/initdb/extra.sql", "shared/initdb/initdb.sql"} <= set(taken)
    assert all(rel.startswith("shared/") for rel in taken)


def test_prepare_gives_the_lab_the_forks_shared_files(fork: Path, offline: None) -> None:
    the_lab = prepare(fork / "cluster.yaml")
    shared = the_lab.repo / "shared"
    hook = shared / "failover" / "user-hook"
    assert hook.read_text() == HOOK and os.access(hook, os.X_OK)
    assert stat.S_IMODE(hook.stat().st_mode) == 0o750
    assert (shared / "initdb" / "extra.sql").read_text() == EXTRA_SQL
    assert tree(the_lab.repo / "shared") == tree(fork / "shared")
    assert (shared / "failover" / "hook.sh").stat().st_mode & 0o111  # rendered hooks stay executable too
    # only shared/ comes from the fork: nodes/ carry lab addresses, secrets/ stay the lab's own
    assert "172.28.7." in (the_lab.repo / "nodes" / "n1" / "repmgr.conf").read_text()
    assert (the_lab.repo / "secrets" / "passwords").is_dir()
    ca_key = Path("secrets") / "tls" / "ca.key"
    assert (the_lab.repo / ca_key).read_bytes() != (fork / ca_key).read_bytes()


def test_the_config_carrier_changes_with_the_forks_files(fork: Path, shop_repo: Path, offline: None,
                                                         tmp_path: Path, shop_spec_text: str) -> None:
    pristine_dir = tmp_path / "pristine"
    pristine_dir.mkdir()
    (pristine_dir / "cluster.yaml").write_text(shop_spec_text)
    pristine = prepare(pristine_dir / "cluster.yaml")
    forked = prepare(fork / "cluster.yaml")
    assert not (pristine.repo / "shared" / "failover" / "user-hook").exists()
    node = forked.lab_spec.member("n1")
    assert images.config_version(forked.repo, node) != images.config_version(pristine.repo, node)


def test_a_file_dropped_from_the_fork_leaves_the_lab(fork: Path, offline: None) -> None:
    prepare(fork / "cluster.yaml")
    (fork / "shared" / "failover" / "user-hook").unlink()
    (fork / "shared" / "initdb" / "extra.sql").unlink()
    the_lab = prepare(fork / "cluster.yaml")
    assert not (the_lab.repo / "shared" / "failover" / "user-hook").exists()
    assert not (the_lab.repo / "shared" / "initdb" / "extra.sql").exists()
    assert (the_lab.repo / "shared" / "initdb" / "initdb.sql").read_text().endswith("-- mine\n")


def test_a_rendered_file_the_fork_deleted_stays_in_the_lab(fork: Path, offline: None) -> None:
    (fork / "shared" / "tests" / "select.sql").unlink()
    the_lab = prepare(fork / "cluster.yaml")
    assert (the_lab.repo / "shared" / "tests" / "select.sql").is_file()


def test_symlinks_stay_symlinks_and_types_may_change(fork: Path, tmp_path: Path, shop_spec_text: str) -> None:
    """As `docker build` packs them: a link is copied as a link, never as the file it points to."""
    (fork / "shared" / "failover" / "hook.sh").unlink()
    (fork / "shared" / "failover" / "hook.sh").symlink_to("user-hook")
    (fork / "shared" / "tests" / "select.sql").unlink()
    (fork / "shared" / "tests" / "select.sql").mkdir()  # a rendered file replaced by a folder
    (fork / "shared" / "tests" / "select.sql" / "one.sql").write_text("SELECT 1;\n")
    target = tmp_path / "lab-repo"
    render_spec(shop_spec_text, target)
    lab.overlay_shared(fork, target)
    link = target / "shared" / "failover" / "hook.sh"
    assert link.is_symlink() and os.readlink(link) == "user-hook"
    assert (target / "shared" / "tests" / "select.sql" / "one.sql").read_text() == "SELECT 1;\n"
