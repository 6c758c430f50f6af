"""Renders the cluster repo from the cluster.yaml cookiecutter just wrote.

Cookiecutter cannot loop over folders (one per node), so it writes only the spec
and this hook hands it to pgdock's renderer: the same code and templates as
`pgdock-gen render`, hence the same tree for the same answers.
"""

import sys
from pathlib import Path

sys.path.insert(0, r"{{ cookiecutter._repo_dir }}")
try:
    from generator.cli import render_for_cookiecutter
except ImportError as exc:
    sys.exit(f"pgdock: cannot load the generator ({exc}); run `pip install -e .` in the pgdock repo first")

sys.exit(render_for_cookiecutter(Path("cluster.yaml")))
