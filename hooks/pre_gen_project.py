"""Checks cookiecutter's answers before it writes anything: `pgdock_gen.cookiecutter_hooks.pre_generate`.

The answers and the checkout's path arrive as JSON string literals (Jinja's `tojson`),
which are valid Python string literals whatever they hold.
"""

import json
import sys
from pathlib import Path

REPO_DIR = {{ cookiecutter._repo_dir | tojson }}
ANSWERS = json.loads({{ cookiecutter | jsonify | tojson }})
sys.path.insert(0, str(Path(REPO_DIR) / "hooks"))
from pgdock_checkout import hooks_module  # noqa: E402 - found through the path set above

sys.exit(hooks_module(REPO_DIR).pre_generate(ANSWERS, Path.cwd()))
