"""Paths and places of a pipeline file, for the plan's checks and errors: where a key is
(``file:line``), and a path the file names, resolved and checked to exist."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError
from .yamlsource import line_of, load_with_lines


def where(spec_path: Path, key: str) -> str:
    """``file:line`` of ``key`` (read again only when there is an error to report)."""
    try:
        _, lines = load_with_lines(spec_path)
    except UserError:
        return str(spec_path)
    line = line_of(lines, tuple(key.split(".")))   # a defaulted key points at its section
    return f"{spec_path}:{line}" if line else str(spec_path)


def existing_dir(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None) -> Path:
    return existing_path(base, value, key, spec_path, fallback, folder=True)


def existing_path(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None,
                  folder: bool = False) -> Path:
    path = resolve(base, value, fallback)
    if not (path.is_dir() if folder else path.exists()):
        what = "folder " if folder else ""
        raise UserError(f"{key}: {what}'{value}' does not exist (looked in {path})", where=where(spec_path, key),
                        hint="fix the path; relative paths are read from the pipeline file's folder")
    return path


def resolve(base: Path, value: str, fallback: Path | None) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    if (base / path).exists() or fallback is None:
        return (base / path).resolve()
    return (fallback / path).resolve()   # the project's own jobs, for pipelines kept elsewhere
