"""Loads the renderer of the template checkout these hooks belong to, as the package `pgdock_gen`.

Cookiecutter runs hooks with the Python it is installed in, where another pgdock-gen
version may be installed (or none). The checkout's own `generator/` is what rendered
this template's files, so it is loaded under the package's name and wins.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def hooks_module(repo_dir: str) -> ModuleType:
    """`pgdock_gen.cookiecutter_hooks` from `repo_dir/generator`."""
    init = Path(repo_dir) / "generator" / "__init__.py"
    spec = importlib.util.spec_from_file_location("pgdock_gen", init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        sys.exit(f"pgdock: {init} is missing; is {repo_dir} a pgdock checkout?")
    package = importlib.util.module_from_spec(spec)
    sys.modules["pgdock_gen"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("pgdock_gen.cookiecutter_hooks")
