"""Load YAML or JSON while remembering the line of every value, for error messages.

``load_with_lines(path)`` returns ``(data, lines)`` where ``lines`` maps a key path
tuple such as ``("train", "hyperparameters", "lr")`` to its 1-based line number.
Duplicate keys are an error (YAML silently keeps the last one, which hides typos).

Hostile files get one ``UserError`` too, never a hang, a traceback or gigabytes of memory:
only regular files are read (a FIFO or a device is refused before it is opened for
reading in earnest), at most ``MAX_BYTES``; the document may nest ``MAX_DEPTH`` levels and
expand to ``MAX_NODES`` values (an alias counts as often as it is used, so a
"billion laughs" alias bomb stops early); an alias inside itself and a number too long
to convert are refused with their line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

Lines = dict[tuple, int]
MAX_BYTES = 1 << 20    # a pipeline file is a few KB
MAX_DEPTH = 64
MAX_NODES = 10_000


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, else ``UserError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # a FIFO must not block the open
    except FileNotFoundError:
        raise UserError(f"file not found: {path}", hint="check the path, or run from the folder holding it") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is not a regular file", hint="name a YAML file, not a folder, pipe or device")
        if info.st_size > limit:
            raise UserError(f"{path} is {info.st_size} bytes; a pipeline file may have at most {limit}",
                            hint="is this the right file?")
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def flow_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside quoted strings and comments: PyYAML's scanner
    slows down quadratically with it (1,500 levels in 3 KB take seconds), so it is
    checked first, in one linear pass."""
    depth = deepest = 0
    quote, escaped, comment = "", False, False
    for char in text:
        if comment:
            comment = char != "\n"
        elif quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def load_with_lines(path: Path) -> tuple[Any, Lines]:
    text = read_text(path)
    if flow_depth(text) > MAX_DEPTH:
        raise UserError(f"brackets nested more than {MAX_DEPTH} levels deep", where=str(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"not valid YAML: {problem}", where=where) from None
    except RecursionError:   # PyYAML's parser recurses once per level
        raise UserError(f"nested far more than {MAX_DEPTH} levels deep", where=str(path)) from None
    if node is None:
        raise UserError("the file is empty", where=str(path))
    lines: Lines = {}
    try:
        return _Builder(path, lines).build(node, ()), lines
    except yaml.YAMLError as exc:   # e.g. an unknown tag (!!python/object) or a bare '='
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"not valid YAML here: {getattr(exc, 'problem', None) or exc}", where=where,
                        hint="quote the value if it is meant as text") from None


class _Builder:
    """Python values from a composed node graph, within the depth and size limits."""

    def __init__(self, path: Path, lines: Lines):
        self.path, self.lines, self.nodes = path, lines, 0
        self.loader = yaml.SafeLoader("")     # constructs scalars only (tags resolved by compose)
        self.open: set[int] = set()    # nodes being built: meeting one again is an alias cycle

    def fail(self, node: yaml.Node, message: str, hint: str | None = None):
        raise UserError(message, where=f"{self.path}:{node.start_mark.line + 1}", hint=hint)

    def build(self, node: yaml.Node, at: tuple) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(node, f"the document expands to more than {MAX_NODES} values",
                      hint="aliases (*name) count each time they are used; write the values out or use fewer")
        if len(at) > MAX_DEPTH:
            self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        self.lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node, self)
        if id(node) in self.open:
            self.fail(node, "an alias refers to a value that contains it", hint="a pipeline file cannot be circular")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, at)
            return [self.build(item, at + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, at: tuple) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, self) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                self.fail(key_node, "mapping keys must be plain names")
            if key in out:
                self.fail(key_node, f"duplicate key '{key}'",
                          hint="each key may appear once; YAML would silently keep only the last one")
            self.lines[at + (key,)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, at + (key,))
        return out


def _scalar(node: yaml.ScalarNode, builder: _Builder) -> Any:
    try:
        return builder.loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:   # e.g. an integer of 5,000 digits
        builder.fail(node, f"cannot read the value {node.value[:40]!r}{'...' if len(node.value) > 40 else ''}: "
                           f"{str(exc).split(';')[0]}", hint="quote it if it is meant as text")


def line_of(lines: Lines, loc: tuple) -> int | None:
    """Line of the deepest known prefix of ``loc`` (pydantic locations may go deeper)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
