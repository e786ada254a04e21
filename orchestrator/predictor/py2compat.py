"""Python 2.7 compatibility mode for legacy ``customize_service.py`` files.

Many ModelArts services were written for the Python 2.7 MXNet runtime: ``print`` statements,
``except E, e``, ``xrange``, ``dict.iteritems()``, ``map(...)[0]`` on what is now a lazy map
object. ``translate(source)`` rewrites such source with the standard library's 2to3 fixers
(lib2to3, present up to Python 3.12; this project pins 3.11), so the file on disk is never
changed and a service that is already Python 3 comes out the same. ``BUILTINS`` supplies the
few names a fixer cannot place (e.g. ``long`` used as a value).
"""

from __future__ import annotations

import warnings

BUILTINS = {"xrange": range, "unicode": str, "basestring": str, "long": int, "raw_input": input}

# Fixers whose rewrite is always safe for service code; the "idioms"/"ws_comma" style ones
# and "import" (implicit relative imports, which would break the flat model folder) are left out.
FIXERS = ("apply", "basestring", "dict", "except", "exec", "filter", "funcattrs", "has_key",
          "long", "map", "ne", "next", "numliterals", "print", "raise", "raw_input", "reduce",
          "renames", "repr", "standarderror", "sys_exc", "throw", "tuple_params", "unicode",
          "urllib", "xrange", "zip", "itertools", "itertools_imports", "types", "operator")


class Py2SourceError(SyntaxError):
    """The source is neither valid Python 3 nor Python 2 that 2to3 can read."""


def translate(source: str, filename: str = "customize_service.py") -> str:
    """The Python 3 equivalent of ``source`` (unchanged when no fixer applies)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # lib2to3 announces its own deprecation
        from lib2to3 import pgen2
        from lib2to3.refactor import RefactoringTool
        # Source that already parses as Python 3 keeps print() and exec() as functions
        # (print(x, end="") is no statement); only its runtime idioms get rewritten.
        options = {"print_function": _is_py3(source, filename), "exec_function": _is_py3(source, filename)}
        tool = RefactoringTool([f"lib2to3.fixes.fix_{name}" for name in FIXERS], options)
        if not source.endswith("\n"):
            source += "\n"
        try:
            return str(tool.refactor_string(source, filename))
        except (pgen2.parse.ParseError, pgen2.tokenize.TokenError) as exc:
            raise Py2SourceError(f"{filename} is neither Python 3 nor Python 2.7 source: {exc}") from None


def _is_py3(source: str, filename: str) -> bool:
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError:
        return False
    return True
