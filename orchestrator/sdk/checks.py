"""Argument checks shared by the SDK classes: every error names the argument at fault,
says what was expected and how to write it (``ArgumentError``)."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Iterable

from ..errors import UserError

# ModelArts names: a letter, then letters, digits, '-' or '_'. The SDK appends "-<run id>"
# (18 characters) so that cleanup can find what a session made; 45 + 19 stays within 64.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,44}$")
LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")

# Flavours ModelArts documents (training and real-time services); config.json's
# "flavors" table adds to these. A name in neither is a typo, not a new machine.
DOCUMENTED_FLAVOURS = frozenset({
    "modelarts.vm.cpu.2u", "modelarts.vm.cpu.8u", "modelarts.vm.gpu.p4", "modelarts.vm.gpu.t4",
    "modelarts.vm.gpu.p100", "modelarts.vm.gpu.v100", "modelarts.bm.gpu.v100", "modelarts.vm.gpu.tnt004",
    "modelarts.vm.cpu.free", "modelarts.vm.gpu.free", "modelarts.vm.arm.d310.3u6g", "modelarts.vm.ai1.a310",
    "modelarts.p3.large.public", "modelarts.p3.large.public.free", "modelarts.kat1.xlarge",
})


class ArgumentError(UserError, ValueError):
    """A wrong argument to an SDK call. The message starts with the argument's name."""


def fail(arg: str, message: str, hint: str | None = None) -> ArgumentError:
    return ArgumentError(f"{arg}: {message}", hint=hint)


def required(value, arg: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise fail(arg, "is required")
    return value


def name(value, arg: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise fail(arg, f"{value!r} is not a valid name",
                   hint="1-45 characters: a letter, then letters, digits, '-' or '_'")
    return value


def obs_uri(value, arg: str, *, folder: bool = False) -> str:
    """``obs://b/k``, ``s3://b/k`` or the classic SDK's ``/b/k`` and ``b/k`` -> ``obs://b/k``
    (a folder gets its trailing slash)."""
    if not isinstance(value, str) or not value.strip():
        raise fail(arg, f"expected an OBS path, got {value!r}", hint="write obs://bucket/dir/ or /bucket/dir/")
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() in ("obs", "s3"):
        uri = "obs://" + rest
    elif not sep and "/" in text and text.strip("/"):   # /b/k, b/k, /b
        uri = "obs://" + text.lstrip("/")
    else:
        raise fail(arg, f"{value!r} is not an OBS path", hint="write obs://bucket/dir/ or /bucket/dir/")
    if folder and not uri.endswith("/"):
        uri += "/"
    return uri


def checked_uri(storage, value, arg: str, *, folder: bool = False) -> str:
    """``obs_uri`` plus the store's own rules (bucket name, escaping keys)."""
    uri = obs_uri(value, arg, folder=folder)
    try:
        storage.exists(uri)
    except UserError as exc:
        raise fail(arg, exc.message, exc.hint) from None
    return uri


def local_path(value, arg: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise fail(arg, f"expected a local file or folder, got {value!r}")
    path = Path(os.path.expanduser(str(value)))
    if not path.exists():
        raise fail(arg, f"{str(value)!r} does not exist (looked in {path.resolve()})")
    return path


def flavour(value, arg: str, known: Iterable[str]) -> str:
    names = set(DOCUMENTED_FLAVOURS) | set(known)
    if not isinstance(value, str) or value not in names:
        close = difflib.get_close_matches(str(value), sorted(names), n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}?" if close else "known flavours: " + ", ".join(sorted(names))
        raise fail(arg, f"unknown flavour {value!r}", hint=hint)
    return value


def count(value, arg: str, low: int = 1, high: int = 16) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise fail(arg, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def choice(value, arg: str, allowed: Iterable[str]) -> str:
    """``value`` matched case-insensitively against ``allowed``; the canonical spelling."""
    for option in allowed:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    raise fail(arg, f"{value!r} is not supported", hint="use " + " or ".join(repr(a) for a in allowed))


def hyperparameters(value) -> tuple[tuple[str, str], ...]:
    """``[{"label": name, "value": v}, ...]`` (the classic SDK's shape) -> ``(("name", "v"), ...)``."""
    example = "[{'label': 'num_epochs', 'value': 3}, {'label': 'lr', 'value': 0.05}]"
    if value is None:
        return ()
    if isinstance(value, dict):
        suggestion = [{"label": k, "value": v} for k, v in list(value.items())[:3]]
        raise fail("hyperparameters", "must be a list of {'label': ..., 'value': ...} dicts, got a dict",
                   hint=f"write hyperparameters={suggestion!r}")
    if not isinstance(value, (list, tuple)):
        raise fail("hyperparameters", f"must be a list, got {type(value).__name__}", hint=f"e.g. {example}")
    out, seen = [], set()
    for i, item in enumerate(value):
        where = f"hyperparameters[{i}]"
        if not isinstance(item, dict) or set(item) != {"label", "value"}:
            raise fail(where, f"must be a dict with exactly the keys 'label' and 'value', got {item!r}",
                       hint=f"e.g. {example}")
        label, val = item["label"], item["value"]
        if not isinstance(label, str) or not LABEL.match(label):
            raise fail(where + "['label']", f"{label!r} is not a valid argument name",
                       hint="letters, digits, '_' or '-', not starting with a digit")
        if label in seen:
            raise fail(where + "['label']", f"{label!r} is given twice")
        if isinstance(val, bool):
            val = "True" if val else "False"
        elif not isinstance(val, (int, float, str)):
            raise fail(where + "['value']", f"must be a string or a number, got {type(val).__name__}")
        seen.add(label)
        out.append((label, str(val)))
    return tuple(out)
