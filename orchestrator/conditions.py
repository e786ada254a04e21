"""The ``when:`` expression language: a small, safe language over metrics and parameters.

    train.metrics.val_accuracy >= 0.9 and not params.skip_deploy
    (evaluate.metrics.top5 - 0.05 > train.metrics.val_accuracy) or params.force

Grammar (lowest precedence first; comparisons chain as in Python, ``a < b < c``)::

    expr   := and ('or' and)*          and := not ('and' not)*
    not    := 'not' not | cmp          cmp := sum (('<'|'<='|'>'|'>='|'=='|'!=') sum)*
    sum    := term (('+'|'-') term)*   term := unary (('*'|'/') unary)*
    unary  := '-' unary | atom         atom := NUMBER | 'string' | true | false | NAME('.'NAME)* | '(' expr ')'

Own tokenizer and recursive-descent parser; nothing is ever passed to ``eval``. Hostile
input is refused with a message pointing at the column: text longer than 500 characters,
nesting deeper than 32, number literals longer than 32 characters or not finite, unknown
names (with a suggestion), and type mistakes (``and`` over numbers, a condition that
does not compare). ``check`` runs at ``validate``/``plan`` time, ``evaluate`` at run time.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

MAX_LENGTH, MAX_DEPTH, MAX_NUMBER_CHARS = 500, 32, 32
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)
  | (?P<str>'[^'\\]{0,200}'|"[^"\\]{0,200}")
  | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\))
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "true", "false"}
_COMPARE = {"<", "<=", ">", ">=", "==", "!="}


class ConditionError(ValueError):
    """A condition that cannot be parsed, checked or evaluated. ``str()`` is one line with
    the expression and the column of the problem."""

    def __init__(self, message: str, text: str = "", pos: int | None = None):
        self.message, self.text, self.pos = message, text, pos
        at = f" at column {pos + 1}" if pos is not None else ""
        super().__init__(f"{message}{at} in '{text}'" if text else message)


@dataclass(frozen=True)
class Node:
    kind: str            # num | str | bool | ref | not | and | or | cmp | arith | neg
    value: Any = None    # literal, reference name, or operator
    args: tuple = ()
    pos: int = 0


def parse(text: str) -> Node:
    if not isinstance(text, str):
        raise ConditionError(f"a condition must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    if not text.strip():
        raise ConditionError("the condition is empty")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0
        self.depth = 0

    def _tokenize(self, text: str) -> list[tuple[str, str, int]]:
        out, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                start = len(text) - len(text[pos:].lstrip())
                raise ConditionError(f"unexpected character {text[start]!r}", text, start)
            kind = m.lastgroup
            start = m.start(kind)
            value = m.group(kind)
            if kind == "name" and value in _KEYWORDS:
                kind = "kw"
            out.append((kind, value, start))
            pos = m.end()
        out.append(("end", "", len(text)))
        return out

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, *values: str) -> tuple[str, str, int] | None:
        kind, value, pos = self.peek()
        if kind in ("op", "kw") and value in values:
            return self.take()
        return None

    def parse(self) -> Node:
        node = self.expr()
        kind, value, pos = self.peek()
        if kind != "end":
            raise ConditionError(f"unexpected {value!r}" + (" (missing 'and' or 'or'?)" if kind != "op" else ""),
                                 self.text, pos)
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"the condition is nested deeper than {MAX_DEPTH} levels", self.text, self.peek()[2])
        try:
            node = self.conj()
            while (tok := self.accept("or")):
                node = Node("or", "or", (node, self.conj()), tok[2])
            return node
        finally:
            self.depth -= 1

    def conj(self) -> Node:
        node = self.neg()
        while (tok := self.accept("and")):
            node = Node("and", "and", (node, self.neg()), tok[2])
        return node

    def neg(self) -> Node:
        if (tok := self.accept("not")):
            return self._prefix(tok, "not", self.neg)
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum()
        parts = []
        while self.peek()[0] == "op" and self.peek()[1] in _COMPARE:
            _, op, pos = self.take()
            right = self.sum()
            parts.append(Node("cmp", op, (left, right), pos))
            left = right
        if not parts:
            return left
        node = parts[0]
        for part in parts[1:]:
            node = Node("and", "and", (node, part), part.pos)
        return node

    def sum(self) -> Node:
        node = self.term()
        while (tok := self.accept("+", "-")):
            node = Node("arith", tok[1], (node, self.term()), tok[2])
        return node

    def term(self) -> Node:
        node = self.unary()
        while (tok := self.accept("*", "/")):
            node = Node("arith", tok[1], (node, self.unary()), tok[2])
        return node

    def unary(self) -> Node:
        if (tok := self.accept("-")):
            return self._prefix(tok, "neg", self.unary)
        return self.atom()

    def _prefix(self, tok, kind: str, operand) -> Node:
        """A prefix operator (``not``, unary ``-``) applied to ``operand()``, one level deeper."""
        self._deeper(tok[2])
        try:
            return Node(kind, tok[1], (operand(),), tok[2])
        finally:
            self.depth -= 1

    def _deeper(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"the condition is nested deeper than {MAX_DEPTH} levels", self.text, pos)

    def atom(self) -> Node:
        kind, value, pos = self.take()
        if kind == "num":
            if len(value) > MAX_NUMBER_CHARS:
                raise ConditionError(f"number literal too long ({len(value)} characters)", self.text, pos)
            number = float(value)
            if not math.isfinite(number):
                raise ConditionError(f"number {value} is too large", self.text, pos)
            return Node("num", number, (), pos)
        if kind == "str":
            return Node("str", value[1:-1], (), pos)
        if kind == "kw" and value in ("true", "false"):
            return Node("bool", value == "true", (), pos)
        if kind == "name":
            return Node("ref", value, (), pos)
        if kind == "op" and value == "(":
            node = self.expr()
            if not self.accept(")"):
                k, v, p = self.peek()
                raise ConditionError("missing ')'" if k == "end" else f"expected ')' but found {v!r}", self.text, p)
            return node
        if kind == "end":
            raise ConditionError("the condition ends too early (a value is missing)", self.text, pos)
        raise ConditionError(f"expected a value but found {value!r}", self.text, pos)


# -- names, types and evaluation ---------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What a condition may name. ``metrics``: {step: known metric names, or None when the
    step's metrics cannot be known before it runs}; ``params``: {name: value}."""
    metrics: dict[str, frozenset[str] | None]
    params: dict[str, Any]


def references(node: Node) -> list[Node]:
    if node.kind == "ref":
        return [node]
    return [ref for arg in node.args for ref in references(arg)]


def check(text: str, scope: Scope) -> Node:
    """Parse and check names and types; returns the tree. Raises ``ConditionError``."""
    node = parse(text)
    for ref in references(node):
        _resolve_name(ref, scope, text)
    kind = _type(node, scope, text)
    if kind != "bool":
        raise ConditionError("a condition must be true or false: compare it, e.g. "
                             "'train.metrics.val_accuracy >= 0.9'", text, node.pos)
    return node


def _resolve_name(ref: Node, scope: Scope, text: str) -> tuple[str, str]:
    parts = ref.value.split(".")
    if parts[0] == "params":
        if len(parts) != 2:
            raise ConditionError(f"'{ref.value}': write params.NAME", text, ref.pos)
        if parts[1] not in scope.params:
            raise ConditionError(f"unknown parameter '{parts[1]}'" + _suggest(parts[1], scope.params), text, ref.pos)
        return "params", parts[1]
    if parts[0] in scope.metrics:
        if len(parts) != 3 or parts[1] != "metrics":
            raise ConditionError(f"'{ref.value}': write {parts[0]}.metrics.NAME", text, ref.pos)
        known = scope.metrics[parts[0]]
        if known is not None and parts[2] not in known:
            raise ConditionError(f"step '{parts[0]}' has no metric '{parts[2]}'" + _suggest(parts[2], known),
                                 text, ref.pos)
        return parts[0], parts[2]
    roots = sorted(scope.metrics) + ["params"]
    raise ConditionError(f"unknown name '{ref.value}'" + _suggest(parts[0], roots, f"names start with one of: "
                                                                  f"{', '.join(r + '.' for r in roots)}"),
                         text, ref.pos)


def _suggest(name: str, known, otherwise: str | None = None) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if otherwise:
        return f" ({otherwise})"
    return f" (known: {', '.join(sorted(known)[:12])})" if known else ""


def _type(node: Node, scope: Scope, text: str) -> str:
    if node.kind in ("num", "str", "bool"):
        return {"num": "number", "str": "text", "bool": "bool"}[node.kind]
    if node.kind == "ref":
        root, name = _resolve_name(node, scope, text)
        if root == "params":
            return _kind_of(scope.params[name])
        return "number"
    kinds = [_type(arg, scope, text) for arg in node.args]
    if node.kind in ("and", "or", "not"):
        for arg, kind in zip(node.args, kinds):
            if kind != "bool":
                raise ConditionError(f"'{node.value}' needs true/false on both sides, not a {kind}", text, arg.pos)
        return "bool"
    if node.kind in ("arith", "neg"):
        for arg, kind in zip(node.args, kinds):
            if kind != "number":
                raise ConditionError(f"'{node.value}' needs numbers, not a {kind}", text, arg.pos)
        return "number"
    if kinds[0] != kinds[1] or (node.value not in ("==", "!=") and kinds[0] == "bool"):
        raise ConditionError(f"cannot compare a {kinds[0]} with a {kinds[1]} using '{node.value}'", text, node.pos)
    return "bool"


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "text"


def evaluate(text: str, scope: Scope, values: dict[str, dict[str, Any]]) -> bool:
    """The condition's value given ``values`` = {step: {metric: number}} of steps that ran.
    A metric the step did not produce raises ``ConditionError`` naming what it did produce."""
    node = check(text, scope)
    return bool(_eval(node, scope, values, text))


def _eval(node: Node, scope: Scope, values: dict, text: str) -> Any:
    kind = node.kind
    if kind in ("num", "str", "bool"):
        return node.value
    if kind == "ref":
        root, name = _resolve_name(node, scope, text)
        if root == "params":
            return scope.params[name]
        got = values.get(root)
        if got is None:
            raise ConditionError(f"step '{root}' has not run, so '{node.value}' has no value", text, node.pos)
        value = got.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            have = ", ".join(sorted(k for k, v in got.items() if isinstance(v, (int, float)))) or "none"
            raise ConditionError(f"step '{root}' produced no number for metric '{name}' (it has: {have})",
                                 text, node.pos)
        return float(value)
    if kind == "and":
        return _eval(node.args[0], scope, values, text) and _eval(node.args[1], scope, values, text)
    if kind == "or":
        return _eval(node.args[0], scope, values, text) or _eval(node.args[1], scope, values, text)
    if kind == "not":
        return not _eval(node.args[0], scope, values, text)
    if kind == "neg":
        return -_eval(node.args[0], scope, values, text)
    a, b = (_eval(arg, scope, values, text) for arg in node.args)
    if kind == "arith":
        if node.value == "/" and b == 0:
            raise ConditionError("division by zero", text, node.pos)
        result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[node.value]()
        if not math.isfinite(result):
            raise ConditionError("the arithmetic overflows", text, node.pos)
        return result
    return {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
            "==": lambda: a == b, "!=": lambda: a != b}[node.value]()
