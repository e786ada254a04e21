"""A small, local stand-in for ModelArts' ``moxing`` file API (``import moxing as mox``).

``obs://bucket/key`` and ``s3://bucket/key`` map to ``$ORCHESTRATOR_OBS_ROOT/obs/bucket/key``,
the layout of the local backend's object store; other paths are local files. This package
never imports ``orchestrator``: job processes must run without it. See ``moxing.file``.
"""

from . import file  # noqa: F401  (mox.file.X)
from .file import MoxPathError, ObsRootNotSetError  # noqa: F401

__all__ = ["file", "MoxPathError", "ObsRootNotSetError"]
