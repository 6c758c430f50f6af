"""Names of the images a cluster uses, in one place so templates and builds agree."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Node, Spec


@dataclass(frozen=True)
class ImageNames:
    cluster: str
    pg_version: int

    @property
    def base(self) -> str:
        """PostgreSQL + repmgr + pgdock-agent; shared by every cluster on the same major."""
        return f"pgdock/base:pg{self.pg_version}"

    @property
    def backup(self) -> str:
        return f"pgdock/backup:pg{self.pg_version}"

    def config_repo(self, node: Node) -> str:
        """Repository of a node's config-carrier images; each config version is a tag."""
        return f"pgdock/{self.cluster}-{node.name}-config"


def names(spec: Spec) -> ImageNames:
    return ImageNames(spec.cluster, spec.pg_version)
