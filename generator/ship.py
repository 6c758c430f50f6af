"""`pgdock-gen push`: gets images onto each node's engine.

Without a registry, an image is streamed from the local engine into the node's
(`docker save | docker --context n2 load`, through python-on-whales); a node that
already has the same image id is skipped. With `--registry`, images are pushed
there once and each node pulls them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from . import docker
from .errors import DockerError
from .progress import Advance, step

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]


def _same_image(remote: DockerClient, tag: str, image_id: str) -> bool:
    return remote.image.exists(tag) and remote.image.inspect(tag).id == image_id


def _counted(chunks: Iterable[bytes], advance: Advance) -> Iterator[bytes]:
    """The stream of `docker save`, telling `advance` how many bytes went by (the push's progress bar)."""
    for chunk in chunks:
        advance(len(chunk))
        yield chunk


def ship(remote: DockerClient, tags: Iterable[str], *, node: str, registry: str | None = None,
         progress: Progress = print) -> list[str]:
    """Makes `remote` hold each of `tags` exactly as the local engine does; returns the tags it had to send."""
    local = docker.client()
    sent = []
    for tag in tags:
        if not local.image.exists(tag):
            raise DockerError(f"image {tag} is not built here; run `pgdock-gen build` first")
        image = local.image.inspect(tag)
        image_id = image.id
        if _same_image(remote, tag, image_id):
            continue
        if registry:
            remote_tag = f"{registry.rstrip('/')}/{tag}"
            with step(progress, f"{node}: pushing {tag} through {registry}"):
                docker.call(f"tagging {tag}", local.image.tag, tag, remote_tag)
                docker.call(f"pushing {remote_tag}", local.image.push, remote_tag, quiet=True)
                docker.call(f"pulling {remote_tag} on {node}", remote.image.pull, remote_tag, quiet=True)
                docker.call(f"tagging {tag} on {node}", remote.image.tag, remote_tag, tag)
        else:
            # the image's size is the bar's estimate; the tar stream is a little larger, and the bar follows it
            with step(progress, f"{node}: sending {tag} (docker save | load)", image.size) as sent_bytes:
                docker.call(f"sending {tag} to {node}", remote.image.load,
                            _counted(local.image.save(tag), sent_bytes), quiet=True)
        if not _same_image(remote, tag, image_id):
            raise DockerError(f"{tag} did not arrive intact on {node}")
        sent.append(tag)
    return sent
