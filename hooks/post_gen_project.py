"""Renders the cluster repo from the cluster.yaml cookiecutter just wrote.

Cookiecutter cannot loop over folders (one per node), so it writes only the spec
and this hook hands it to pgdock's renderer: the same code and templates as
`pgdock-gen render`, hence the same tree for the same answers.
"""

import sys
from pathlib import Path

REPO_DIR = {{ cookiecutter._repo_dir | tojson }}
sys.path.insert(0, str(Path(REPO_DIR) / "hooks"))
from pgdock_checkout import hooks_module  # noqa: E402 - found through the path set above

sys.exit(hooks_module(REPO_DIR).post_generate(Path("cluster.yaml")))
