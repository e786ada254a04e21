"""Reads a Dockerfile into the facts a container would start with: base image, user,
working directory, environment, exposed ports, stop signal, command and which context
path each ``COPY`` puts where. Used by the tests that check the build context against
ModelArts' specification and by the emulator, which runs the image's boot programs on
this machine with container paths mapped onto the context (``Image.host_path``).

Handles the instruction forms the build context uses and the common others: line
continuations, comments, ``ENV k=v ...`` and ``ENV k v``, exec (JSON) and shell forms of
``CMD``/``ENTRYPOINT``, ``COPY --chown=...``. Raises ``ValueError`` naming the line for
what it cannot read.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str          # upper case
    value: str            # the rest, continuations joined


@dataclass
class Image:
    base: str = ""
    user: str = "root"
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    stopsignal: str = "SIGTERM"
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    copies: list[tuple[str, str]] = field(default_factory=list)    # (context path, container path)
    runs: list[str] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)

    def host_path(self, container_path: str, context: Path, root: Path) -> Path:
        """Where ``container_path`` is on this machine: under the context when a ``COPY``
        put it there (the longest destination wins), else under ``root``."""
        path = posixpath.normpath(container_path)
        best = None
        for src, dest in self.copies:
            dest = posixpath.normpath(dest)
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                if best is None or len(dest) > len(best[1]):
                    best = (src, dest)
        if best is None:
            return root / path.lstrip("/")
        rest = posixpath.relpath(path, best[1])
        return (context / best[0] / ("" if rest == "." else rest)).resolve()


    def host_env(self, context: Path, root: Path) -> dict[str, str]:
        """The image's ``ENV`` with every absolute container path (also inside
        ``:``-separated lists) mapped by ``host_path``."""
        def one(value: str) -> str:
            return ":".join(str(self.host_path(p, context, root)) if p.startswith("/") else p
                            for p in value.split(":"))
        return {key: one(value) for key, value in self.env.items()}


def instructions(text: str) -> list[Instruction]:
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue                      # comments inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, value = whole.partition(" ")
        out.append(Instruction(start, keyword.upper(), value.strip()))
    if pending:
        raise ValueError(f"line {start}: the Dockerfile ends inside a continued instruction")
    return out


def _exec_form(ins: Instruction) -> list[str]:
    if ins.value.startswith("["):
        try:
            parsed = json.loads(ins.value)
        except ValueError:
            raise ValueError(f"line {ins.line}: {ins.keyword} is not valid JSON: {ins.value}") from None
        if not all(isinstance(p, str) for p in parsed):
            raise ValueError(f"line {ins.line}: {ins.keyword} must be a list of strings")
        return parsed
    return ["/bin/sh", "-c", ins.value]


def _env(ins: Instruction, env: dict[str, str]) -> None:
    words = shlex.split(ins.value)
    if words and "=" not in words[0]:                  # ENV key value
        env[words[0]] = ins.value.split(None, 1)[1] if len(words) > 1 else ""
        return
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"line {ins.line}: ENV {word!r} needs key=value")
        env[key] = _expand(value, env)


def _expand(value: str, env: dict[str, str]) -> str:
    for key, known in sorted(env.items(), key=lambda kv: -len(kv[0])):
        value = value.replace("${" + key + "}", known).replace("$" + key, known)
    return value


def parse(text: str) -> Image:
    image = Image()
    image.instructions = instructions(text)
    for ins in image.instructions:
        k = ins.keyword
        if k == "FROM":
            image.base = ins.value.split()[0]
        elif k == "USER":
            image.user = ins.value.split(":")[0]
        elif k == "WORKDIR":
            image.workdir = posixpath.normpath(posixpath.join(image.workdir, _expand(ins.value, image.env)))
        elif k == "ENV":
            _env(ins, image.env)
        elif k == "EXPOSE":
            image.expose += [int(p.split("/")[0]) for p in ins.value.split()]
        elif k == "STOPSIGNAL":
            image.stopsignal = ins.value
        elif k == "CMD":
            image.cmd = _exec_form(ins)
        elif k == "ENTRYPOINT":
            image.entrypoint = _exec_form(ins)
        elif k == "RUN":
            image.runs.append(ins.value)
        elif k in ("COPY", "ADD"):
            words = [w for w in (json.loads(ins.value) if ins.value.startswith("[") else shlex.split(ins.value))
                     if not w.startswith("--")]
            if len(words) < 2:
                raise ValueError(f"line {ins.line}: {k} needs a source and a destination")
            dest = posixpath.normpath(posixpath.join(image.workdir, _expand(words[-1], image.env)))
            for src in words[:-1]:
                image.copies.append((src, dest))
    return image


def read(path: Path) -> Image:
    try:
        return parse(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
