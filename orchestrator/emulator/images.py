"""The emulator's SWR: image URLs it knows, each backed by a build context written by
``python -m orchestrator image build-context`` (``--image URL=DIR``). Jobs and models that
name an image it does not know are refused as the cloud refuses an image it cannot pull
(400 with ModelArts' ``{"error_code", "error_msg"}`` body; the code is the emulator's
choice). A known image's programs run on this machine through ``HostImage``: the boot
scripts and runtime of the context itself, container paths under a per-resource root.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.image.local import HostImage

from .records import ApiError

UNKNOWN_IMAGE = "ModelArts.2763"


def parse(specs: list[str]) -> dict[str, Path]:
    """``["swr.../org/name:tag=DIR", ...]`` -> {url: context}; ``ValueError`` saying what is wrong."""
    out = {}
    for spec in specs:
        url, sep, folder = spec.rpartition("=")
        if not sep or not url or ":" not in url.rsplit("/", 1)[-1]:
            raise ValueError(f"--image {spec!r}: write SWR_URL=CONTEXT_DIR, the URL with its :tag")
        context = Path(folder).resolve()
        if not (context / "Dockerfile").is_file():
            raise ValueError(f"--image {spec!r}: {context} has no Dockerfile "
                             "(write it with python -m orchestrator image build-context DIR)")
        out[url] = context
    return out


class Images:
    def __init__(self, contexts: dict[str, Path]):
        self.contexts = dict(contexts)

    def context(self, url: str, what: str) -> Path:
        if url not in self.contexts:
            raise ApiError(400, UNKNOWN_IMAGE, f"The image {url} of {what} does not exist in SWR or cannot be "
                                               "accessed. Push it to SWR and check the organization and tag.")
        return self.contexts[url]

    def host(self, url: str, root: Path) -> HostImage:
        return HostImage(self.context(url, "the resource"), root)
