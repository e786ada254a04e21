"""Find and instantiate the service class of a ModelArts model package.

Runs inside predictor worker processes (and tests); importing this module is cheap, but
``load_service`` imports the package's ``customize_service.py``, which imports mxnet.

Contract:

* ``runtime_dir()`` is ``orchestrator/runtime``; ``prepare_path(model_dir)`` puts it and
  the model folder first on ``sys.path`` (idempotent) so ``import mms...`` and sibling
  modules of the service resolve.
* ``find_service_class(module)``: the single leaf class defined in the module that
  subclasses ``MXNetBaseService``; failing that, the single class defining ``_preprocess``
  or ``_postprocess``. None or several -> ``PackageError`` (the predictor exits with 2).
* ``service_style(cls)``: ``"legacy"`` when the class's own ``__init__`` takes a manifest
  (``(model_name, model_dir, manifest, gpu=None)``), else ``"new"``.
* ``load_service(model_dir, model_name, py2_compat=False, runtime="")`` -> ``(service, style)``.
  The runtime is ``runtime`` (the model import's), else config.json's, else ``python2.7``
  (ModelArts' default); a python2 runtime loads the service in the compatibility mode.
  Legacy classes get ``(model_name, model_dir, manifest)`` with the manifest built by
  ``mms.manifest.build_manifest`` from the folder and ``os.environ`` (``input_data_name``
  ...); new ones ``(model_name, model_dir)`` and build the same manifest lazily.
  Exceptions from the service's ``__init__`` propagate.
"""

from __future__ import annotations

import importlib.util
import json
import inspect
import os
import sys

from . import py2compat

MODULE_NAME = "customize_service"
DEFAULT_RUNTIME = "python2.7"   # ModelArts: a config.json without "runtime" is the Python 2.7 runtime
SERVICE_FILE = "customize_service.py"


class PackageError(Exception):
    """The model package is malformed (no/several service classes, missing script)."""


def runtime_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime")


def prepare_path(model_dir: str) -> None:
    for entry in (os.path.abspath(model_dir), runtime_dir()):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def import_service_module(model_dir: str, py2_compat: bool = False):
    """Execute ``customize_service.py`` of ``model_dir`` as module ``customize_service``."""
    path = os.path.join(model_dir, SERVICE_FILE)
    if not os.path.isfile(path):
        raise PackageError(f"{SERVICE_FILE} not found in {model_dir}")
    prepare_path(model_dir)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module  # so pickle/dataclasses inside the service resolve
    try:
        if py2_compat:   # Python 2.7 services: rewritten in memory, the file stays as it is
            module.__dict__.update(py2compat.BUILTINS)
            with open(path, encoding="utf-8") as fh:
                code = compile(py2compat.translate(fh.read(), path), path, "exec")
            exec(code, module.__dict__)
        else:
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(MODULE_NAME, None)
        hint = "" if py2_compat else ('; if it was written for Python 2.7, set "runtime": "python2.7" in '
                                      'the package\'s config.json to load it in the compatibility mode')
        raise PackageError(f"{SERVICE_FILE} line {exc.lineno}: {exc.msg}{hint}") from None
    except BaseException:
        sys.modules.pop(MODULE_NAME, None)
        raise
    return module


def _leaves(classes: list[type]) -> list[type]:
    """Drop classes that are bases of other candidates (a service may define its own base)."""
    return [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]


def find_service_class(module) -> type:
    from mms.model_service.mxnet_model_service import MXNetBaseService

    own = [v for v in vars(module).values()
           if inspect.isclass(v) and v.__module__ == module.__name__]
    found = _leaves([c for c in own if issubclass(c, MXNetBaseService)])
    if not found:
        found = _leaves([c for c in own if "_preprocess" in vars(c) or "_postprocess" in vars(c)])
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise PackageError(
            f"{SERVICE_FILE} must define exactly one service class (a subclass of "
            f"MXNetBaseService, or a class with _preprocess/_postprocess); found: {names}")
    return found[0]


def service_style(cls: type) -> str:
    """``"legacy"`` or ``"new"`` (see module docstring)."""
    owner = next(k for k in cls.__mro__ if "__init__" in k.__dict__)
    if owner is object or owner.__module__.split(".")[0] == "mms":
        return "new"  # our base accepts both; new style is ModelArts' documented one
    init = owner.__dict__["__init__"]
    try:
        params = list(inspect.signature(init).parameters.values())[1:]  # drop self
    except (TypeError, ValueError):  # C-level or oddly wrapped __init__
        return "new"
    if any(p.name == "manifest" for p in params):
        return "legacy"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return "legacy" if len(positional) >= 3 else "new"


def load_service(model_dir: str, model_name: str, py2_compat: bool = False, runtime: str = ""):
    """Import the package's service class and instantiate it; returns ``(service, style)``."""
    model_dir = os.path.abspath(model_dir)
    runtime = runtime or package_runtime(model_dir) or DEFAULT_RUNTIME
    py2_compat = py2_compat or runtime.startswith("python2")
    module = import_service_module(model_dir, py2_compat=py2_compat)
    cls = find_service_class(module)
    style = service_style(cls)
    if style == "legacy":
        from mms.manifest import build_manifest

        manifest = build_manifest(model_dir, model_name)
        service = cls(model_name, model_dir, manifest)
    else:
        service = cls(model_name, model_dir)
    return service, style


def package_runtime(model_dir: str) -> str:
    """The ``runtime`` of the package's config.json ('' when absent or unreadable); ModelArts
    runs ``python2.7`` packages in its Python 2 image, we in the compatibility mode."""
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as fh:
            runtime = json.load(fh).get("runtime", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return runtime if isinstance(runtime, str) else ""
