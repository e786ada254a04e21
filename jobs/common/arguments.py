"""A job's arguments, declared once in its folder's ``arguments.json``.

The job builds its command-line parser from the declaration, and the orchestrator checks a
pipeline's ``train.hyperparameters`` against the same file before anything runs, so the two
cannot drift apart. ``docs/jobs.md`` is generated from it too.

A declaration is ``{"description": str, "arguments": [entry, ...]}``; an entry has a
``name`` and optionally:

  type       "int" | "float" | "str" | "bool" (default "str"; bools accept true/false/1/0/yes/no)
  default    the value when the argument is not given (null: none)
  required   true when the job cannot run without it
  aliases    other accepted names (insightface / ModelArts notebook spellings)
  choices    the allowed values
  min, max   inclusive bounds; gt, lt: exclusive ones
  pattern    a regular expression the whole text must match; ``pattern_hint`` says it in words
  platform   true for what ModelArts itself passes (data_url, train_url, num_gpus)
  group      the heading it is listed under in the docs
  help       one line for --help and the docs

Every name also works dashed (``--num-epochs``). A parser built with ``StrictParser`` raises
``ArgError`` (one line) instead of printing usage and exiting. Standard library only: the
orchestrator reads declarations without importing mxnet.
"""
import argparse
import json
import os
import re

DECLARATION = "arguments.json"
TYPES = ("int", "float", "str", "bool")
KEYS = {"name", "type", "default", "required", "aliases", "choices", "min", "max", "gt", "lt", "pattern",
        "pattern_hint", "platform", "group", "help"}


class ArgError(ValueError):
    """A bad command-line value (one-line message)."""


class StrictParser(argparse.ArgumentParser):
    def error(self, message):  # no usage dump + exit inside library code
        raise ArgError(message)


class DeclarationError(ValueError):
    """``arguments.json`` is malformed (one-line message naming the file and entry)."""


def load(folder):
    """The declaration of the job in ``folder`` (a dict), None when it has none, or
    DeclarationError."""
    path = os.path.join(folder, DECLARATION)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            decl = json.load(f)
    except (OSError, ValueError) as e:
        raise DeclarationError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(decl, dict) or not isinstance(decl.get("arguments"), list):
        raise DeclarationError(f"{path}: must be an object with an 'arguments' list")
    seen = set()
    for i, entry in enumerate(decl["arguments"]):
        where = f"{path}: arguments[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DeclarationError(f"{where}: must be an object with a 'name'")
        unknown = set(entry) - KEYS
        if unknown:
            raise DeclarationError(f"{where} ({entry['name']}): unknown keys {sorted(unknown)}")
        if entry.get("type", "str") not in TYPES:
            raise DeclarationError(f"{where} ({entry['name']}): type must be one of {', '.join(TYPES)}")
        for name in names_of(entry):
            if name in seen:
                raise DeclarationError(f"{where}: the name {name!r} is declared twice")
            seen.add(name)
    return decl


def names_of(entry):
    """The canonical name first, then the aliases."""
    return [entry["name"]] + list(entry.get("aliases", ()))


def find(decl, name):
    """The entry ``name`` (or an alias, either spelling) refers to, or None."""
    wanted = name.replace("-", "_")
    for entry in decl["arguments"]:
        if wanted in names_of(entry):
            return entry
    return None


def all_names(decl):
    return [name for entry in decl["arguments"] for name in names_of(entry)]


def convert(entry, text):
    """``text`` as the entry's type, or ValueError saying what was expected."""
    kind = entry.get("type", "str")
    text = str(text).strip() if kind != "str" else str(text)
    if kind == "bool":
        value = text.lower()
        if value in ("1", "true", "yes", "y", "on"):
            return True
        if value in ("0", "false", "no", "n", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {text!r}")
        return value
    for choice in entry.get("choices") or ():   # ArcFace -> arcface: the declared spelling
        if isinstance(choice, str) and choice.lower() == text.lower():
            return choice
    return text


def problem(entry, value):
    """What is wrong with an already converted ``value`` (choices, bounds, pattern), or None."""
    if value is None:
        return None
    choices = entry.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    if "min" in entry and value < entry["min"]:
        return f"must be >= {entry['min']}, got {value}"
    if "max" in entry and value > entry["max"]:
        return f"must be <= {entry['max']}, got {value}"
    if "gt" in entry and not value > entry["gt"]:
        return f"must be > {entry['gt']}, got {value}"
    if "lt" in entry and not value < entry["lt"]:
        return f"must be < {entry['lt']}, got {value}"
    if "pattern" in entry and not re.fullmatch(entry["pattern"], str(value)):
        return f"must be {entry.get('pattern_hint', 'like ' + entry['pattern'])}, got {value!r}"
    return None


def build_parser(decl, parser_class=argparse.ArgumentParser, **kwargs):
    """An argparse parser with ``--name``, its dashed twin and every alias of each entry;
    values are converted to the declared type (bounds are checked by ``check``)."""
    parser = parser_class(description=decl.get("description"), **kwargs)
    for entry in decl["arguments"]:
        flags = []
        for name in names_of(entry):
            flags += ["--" + name] + (["--" + name.replace("_", "-")] if "_" in name else [])
        parser.add_argument(*flags, dest=entry["name"], type=_argparse_type(entry),
                            default=entry.get("default"), required=bool(entry.get("required")),
                            help=(entry.get("help") or "").replace("%", "%%"))
    return parser


def check(decl, args):
    """The first problem of the parsed ``args`` as ``--name message``, or None."""
    for entry in decl["arguments"]:
        message = problem(entry, getattr(args, entry["name"], None))
        if message:
            return f"--{entry['name']} {message}"
    return None


def _argparse_type(entry):
    def parse(text):
        try:
            return convert(entry, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = entry.get("type", "str")
    return parse
