"""The lab's Prometheus (`lab up --monitoring`): the lab render's monitoring/, run as `<cluster>-prometheus`.

Production adds monitoring/prometheus.yml's job and alerts.yml to a Prometheus of its own. In the lab,
Prometheus from Debian's package joins the lab network at a fixed address (lab_service builds and runs it),
with the lab's copy of monitoring/: the targets are the lab's node addresses (the lab's render wrote them),
the alert rules are the rendered ones, and only the scrape and evaluation intervals are shorter (LAB_INTERVAL),
so that an alert's `for:` is what makes it wait, not the production interval.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import contract, lab_service
from .errors import PgdockError, UsageError
from .lab_service import Progress
from .spec import Spec
from .template import TEMPLATES

if TYPE_CHECKING:
    from python_on_whales import DockerClient

HOST_INDEX = 240
"""Prometheus's place among the lab /24's host addresses (.241): after the nodes (from .11), the witness
(.200), the S3 server (.230) and the proxy (.240)."""
PORT = 9090
"""Prometheus's own default: its web UI and HTTP API."""
LAB_INTERVAL = "5s"
"""The lab's scrape and evaluation interval (production: monitoring/prometheus.yml's 15 s)."""
DOCKERFILE = TEMPLATES / "lab" / "prometheus" / "Dockerfile"
_INTERVAL = re.compile(r"^(\s+(?:scrape|evaluation)_interval:)[ \t]*\S+[ \t]*$", re.MULTILINE)


def address(subnet: str) -> str:
    """The lab Prometheus's fixed address on the lab network."""
    return lab_service.host_address(subnet, HOST_INDEX)


def require(spec: Spec, spec_path: Path) -> None:
    """Refuses `--monitoring` for a spec without `monitoring:`: there is no monitoring/ to run."""
    if spec.monitoring is None:
        raise UsageError(f"--monitoring runs the spec's monitoring/ folder, but {spec_path} has no `monitoring:` "
                         "section; add `monitoring: {}` to it")


def lab_config(text: str, interval: str = LAB_INTERVAL) -> str:
    """prometheus.yml with its global scrape and evaluation intervals set to `interval`, nothing else changed."""
    changed, count = _INTERVAL.subn(lambda m: f"{m[1]} {interval}", text)
    if count != 2:
        raise PgdockError(f"monitoring/prometheus.yml has {count} interval lines, not scrape_interval and "
                          "evaluation_interval once each: pgdock's template and its lab no longer agree")
    return changed


def write_context(repo: Path, folder: Path) -> Path:
    """The lab Prometheus's build context in `folder`, from the lab's render `repo`: the Dockerfile, the lab's
    prometheus.yml (lab_config) and alerts.yml as rendered."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DOCKERFILE, folder / "Dockerfile")
    monitoring = repo / "monitoring"
    (folder / "prometheus.yml").write_text(lab_config((monitoring / "prometheus.yml").read_text()))
    shutil.copyfile(monitoring / "alerts.yml", folder / "alerts.yml")
    return folder


def service(spec: Spec, context: Path) -> lab_service.Service:
    return lab_service.Service(contract.prometheus_container(spec.cluster), contract.lab_prometheus_image(spec.cluster),
                               HOST_INDEX, context)


def start(spec: Spec, repo: Path, folder: Path, network: str, subnet: str, *, mirror: str | None = None,
          progress: Progress = print) -> str:
    """Writes the context into `folder`, builds the image and makes `<cluster>-prometheus` run it; its address."""
    context = write_context(repo, folder)
    return lab_service.start(service(spec, context), spec, network, subnet, mirror=mirror, progress=progress)


def remove(client: DockerClient, cluster: str) -> None:
    """Removes the lab Prometheus's container, if any (its image stays, as the nodes' do)."""
    lab_service.remove(client, contract.prometheus_container(cluster))


def url(at: str) -> str:
    return f"http://{at}:{PORT}"


def where(spec: Spec, at: str) -> str:
    """Where to open the lab's Prometheus, for the end of `lab up --monitoring`."""
    return (f"prometheus {contract.prometheus_container(spec.cluster)}: open {url(at)} (Debian's classic UI; "
            f"alerts: {url(at)}/classic/alerts); it scrapes every member every {LAB_INTERVAL}")
