"""Load YAML or JSON while remembering the line of every value, for error messages.

``load_with_lines(path)`` returns ``(data, lines)`` where ``lines`` maps a key path
tuple such as ``("train", "hyperparameters", "lr")`` to its 1-based line number.
Duplicate keys are an error (YAML silently keeps the last one, which hides typos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

Lines = dict[tuple, int]


def load_with_lines(path: Path) -> tuple[Any, Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"file not found: {path}", hint="check the path, or run from the folder holding it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"not valid YAML: {problem}", where=where) from None
    if node is None:
        raise UserError("the file is empty", where=str(path))
    lines: Lines = {}
    try:
        return _build(node, (), lines, path), lines
    except yaml.YAMLError as exc:   # e.g. an unknown tag (!!python/object) or a bare '='
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"not valid YAML here: {getattr(exc, 'problem', None) or exc}", where=where,
                        hint="quote the value if it is meant as text") from None


def _build(node: yaml.Node, at: tuple, lines: Lines, path: Path) -> Any:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if isinstance(key, (dict, list)) or key is None:
                raise UserError("mapping keys must be plain names", where=f"{path}:{key_node.start_mark.line + 1}")
            if key in out:
                raise UserError(f"duplicate key '{key}'", where=f"{path}:{key_node.start_mark.line + 1}",
                                hint="each key may appear once; YAML would silently keep only the last one")
            lines[at + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, at + (key,), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, at + (i,), lines, path) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return yaml.SafeLoader(" ").construct_object(node, deep=True)
    return None


def line_of(lines: Lines, loc: tuple) -> int | None:
    """Line of the deepest known prefix of ``loc`` (pydantic locations may go deeper)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
