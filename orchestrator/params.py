"""Pipeline parameters: a ``parameters:`` section with typed defaults, ``run -p NAME=VALUE``
overrides, and ``${params.NAME}`` in any value of the file.

``resolve(data, lines, path, overrides)`` runs on the raw YAML data *before* the pydantic
models validate it, so every value is checked with its final type. A value that is exactly
``${params.NAME}`` takes the parameter's typed value (``num_epochs: ${params.epochs}`` stays
an int); a reference inside a longer string is replaced by its text. Every mistake (an
undeclared parameter, a value of the wrong type, an override nobody declared) is a
``UserError`` naming the parameter and the file:line it was written on.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

REFERENCE = re.compile(r"\$\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")
ANY_REFERENCE = re.compile(r"\$\{([^}]*)\}")
TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str                  # int | float | str | bool
    default: Any
    description: str = ""


@dataclass(frozen=True)
class Resolved:
    """What substitution produced: the data, the values used, where each came from, and
    which key paths took their value from which parameter (for error messages)."""
    data: Any
    values: dict[str, Any]
    sources: dict[str, str]            # name -> "default" | "-p"
    used_at: dict[tuple, str]          # key path -> parameter name


def declared(data: Any, lines: dict, path: Path) -> dict[str, Parameter]:
    """The ``parameters:`` section: ``name: default`` (type from the default) or
    ``name: {type: int, default: 3, description: ...}``."""
    section = data.get("parameters") if isinstance(data, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UserError("parameters must be a mapping of name: default (or name: {type, default, description})",
                        where=_where(path, lines, ("parameters",)))
    out = {}
    for name, spec in section.items():
        at = ("parameters", name)
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(f"parameter name '{name}' must be letters, digits and '_'", where=_where(path, lines, at))
        if isinstance(spec, dict):
            unknown = set(spec) - {"type", "default", "description"}
            if unknown:
                raise UserError(f"parameter '{name}': unknown key '{sorted(unknown)[0]}' (allowed: type, default, "
                                "description)", where=_where(path, lines, at))
            if "default" not in spec:
                raise UserError(f"parameter '{name}' has no default", where=_where(path, lines, at),
                                hint="give it one: default: ...")
            kind = spec.get("type") or _type_of(spec["default"])
            if kind not in TYPES:
                raise UserError(f"parameter '{name}': type '{kind}' is not one of {', '.join(TYPES)}",
                                where=_where(path, lines, at + ("type",)))
            default = _convert(name, kind, spec["default"], _where(path, lines, at + ("default",)))
            out[name] = Parameter(name, kind, default, str(spec.get("description") or ""))
        else:
            if spec is None or isinstance(spec, list):
                raise UserError(f"parameter '{name}' needs a default value (a number, text or true/false)",
                                where=_where(path, lines, at))
            out[name] = Parameter(name, _type_of(spec), spec)
    return out


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["lr=0.05", "num_layers=34"]`` (from ``-p``) -> ``{"lr": "0.05", ...}``."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"-p {item!r}: write -p NAME=VALUE, e.g. -p lr=0.05")
        out[name.strip()] = value
    return out


def resolve(data: Any, lines: dict, path: Path, overrides: dict[str, Any] | None = None) -> Resolved:
    params = declared(data, lines, path)
    values = {name: p.default for name, p in params.items()}
    sources = {name: "default" for name in params}
    for name, raw in (overrides or {}).items():
        if name not in params:
            raise UserError(f"-p {name}=...: the pipeline declares no parameter '{name}'" + _suggest(name, params),
                            where=str(path), hint="declare it under parameters: in the pipeline file")
        values[name] = _convert(name, params[name].type, raw, f"-p {name}={raw}")
        sources[name] = "-p"
    used_at: dict[tuple, str] = {}
    out = {k: (v if k == "parameters" else _substitute(v, (k,), values, params, lines, path, used_at))
           for k, v in data.items()} if isinstance(data, dict) else data
    return Resolved(out, values, sources, used_at)


def _substitute(value: Any, at: tuple, values: dict, params: dict, lines: dict, path: Path, used_at: dict) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, at + (k,), values, params, lines, path, used_at) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, at + (i,), values, params, lines, path, used_at) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    for match in ANY_REFERENCE.finditer(value):
        ref = REFERENCE.fullmatch(match.group(0))
        if ref is None:
            raise UserError(f"'{match.group(0)}' is not a parameter reference; write ${{params.NAME}}",
                            where=_where(path, lines, at), hint="a literal '${' cannot appear in a value")
        if ref.group(1) not in values:
            raise UserError(f"{'.'.join(map(str, at))}: unknown parameter '{ref.group(1)}'"
                            + _suggest(ref.group(1), params), where=_where(path, lines, at),
                            hint="declare it under parameters: (name: default)")
        used_at[at] = ref.group(1)
    whole = REFERENCE.fullmatch(value.strip())
    if whole:
        return values[whole.group(1)]
    return REFERENCE.sub(lambda m: _text(values[m.group(1)]), value)


def _convert(name: str, kind: str, raw: Any, where: str) -> Any:
    """``raw`` (YAML value or ``-p`` text) as a value of ``kind``, or a UserError."""
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            number = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if isinstance(raw, (dict, list)) or raw is None:
            raise ValueError
        return raw if isinstance(raw, str) else _text(raw)
    except (ValueError, OverflowError):
        raise UserError(f"parameter '{name}': {raw!r} is not a valid {kind}", where=where,
                        hint={"bool": "use true or false", "int": "use a whole number, e.g. 34",
                              "float": "use a number, e.g. 0.05", "str": "use text"}[kind]) from None


def _type_of(value: Any) -> str:
    for kind in ("bool", "int", "float"):
        if type(value) is TYPES[kind]:
            return kind
    return "str"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _suggest(name: str, params: dict) -> str:
    close = difflib.get_close_matches(name, list(params), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (declared: {', '.join(sorted(params))})" if params else " (the file declares no parameters)"


def _where(path: Path, lines: dict, at: tuple) -> str:
    from .yamlsource import line_of
    line = line_of(lines, at)
    return f"{path}:{line}" if line else str(path)
