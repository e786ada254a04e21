"""The installed version, for ``--version`` of the command line and the predictor."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "mxnet-orchestrator"


def describe() -> str:
    """``mxnet-orchestrator 0.1.0 (mxnet 1.9.1, Python 3.11.7)``; read from the installed
    metadata, so it never imports mxnet."""
    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return f"{DISTRIBUTION} {of(DISTRIBUTION)} (mxnet {of('mxnet')}, Python {platform.python_version()})"


class VersionAction(argparse.Action):
    """``--version``: print ``describe()`` and exit 0 (computed only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(describe())
        parser.exit(0)
