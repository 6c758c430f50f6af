"""Before any question: names the Python packages the renderer needs that cookiecutter's Python lacks.

Cookiecutter runs this file as it is (no Jinja), from a copy of the template checkout.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pgdock_checkout import hooks_module  # noqa: E402 - found through the path set above

sys.exit(hooks_module(str(HERE.parent)).check_packages())
