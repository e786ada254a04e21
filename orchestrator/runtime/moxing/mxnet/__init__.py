"""``import moxing.mxnet as mox``: the same ``mox.file`` API as ``import moxing as mox``."""

from .. import file  # noqa: F401
from ..file import MoxPathError, ObsRootNotSetError  # noqa: F401

__all__ = ["file", "MoxPathError", "ObsRootNotSetError"]
