"""The image's programs run on this machine, as a container would run them, without Docker.

``HostImage(context, root)`` reads the build context's Dockerfile; container paths map
onto the context where a ``COPY`` put them (the boot scripts and the runtime are run from
the context itself, so what the tests exercise is what the image holds) and under ``root``
otherwise (``/home/ma-user`` -> ``root/home/ma-user``). ``env()`` is the image's ``ENV``
mapped the same way (``python`` is this
interpreter; nothing else of this process's environment, so no secret reaches the
image's programs); ``command()`` maps the paths in a container command line. Used by the
emulator to run image jobs and services, and by the tests.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from . import dockerfile

HOST_VARS = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


class HostImage:
    def __init__(self, context: Path, root: Path, dockerfile_name: str = "Dockerfile"):
        self.context, self.root = context.resolve(), root.resolve()
        path = self.context / dockerfile_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a build context "
                                    "(write one with python -m orchestrator image build-context)")
        self.image = dockerfile.read(path)

    def path(self, container_path: str) -> Path:
        return self.image.host_path(container_path, self.context, self.root)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in HOST_VARS}   # a container starts clean: no secrets
        env.update(self.image.host_env(self.context, self.root))
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        env.update(overrides)
        return env

    def command(self, command: str | list[str]) -> list[str]:
        """A container command (a shell string or a list) with its absolute paths mapped."""
        words = shlex.split(command) if isinstance(command, str) else list(command)
        return [str(self.path(w)) if w.startswith("/") and not w.startswith(("/bin/", "/usr/")) else w
                for w in words]

    @property
    def default_command(self) -> list[str]:
        return self.command(self.image.entrypoint + self.image.cmd)

    def make_home(self) -> Path:
        home = self.path(self.image.env.get("HOME", "/root"))
        home.mkdir(parents=True, exist_ok=True)
        return home
