"""Serve a model package's converted (optimised) network files in place of the originals.

A package converted by ``orchestrator.optimize`` holds, beside its original
``<prefix>-symbol.json`` / ``<prefix>-NNNN.params``, a folder ``optimized/<mode>/`` with the
converted files of the same names and ``optimize.json``::

    {"mode": "int8", "files": {"resnet-symbol.json": "optimized/int8/resnet-symbol.json",
                               "resnet-0000.params": "optimized/int8/resnet-0000.params"},
     "agreement": {...}, "note": "..."}

``activate(model_dir, wanted)`` makes MXNet's own loaders (``mx.sym.load``, ``mx.nd.load``
and therefore ``mx.model.load_checkpoint``, ``SymbolBlock.imports``, Module checkpoints)
return the converted file whenever a service asks for an original one, so an unmodified
``customize_service.py`` runs the converted network. ``wanted``: ``None``/``""``/``"auto"``
= what ``optimize.json`` says (fp32 when there is none), ``"fp32"`` = the originals (for
A/B comparisons), a mode = that mode, which must be the converted one (else
``ValueError``: the package was not converted to it). Returns the mode that is served.
Process-wide and idempotent for one package; ``deactivate()`` undoes it.
"""

from __future__ import annotations

import json
import os

MANIFEST = "optimize.json"
MODES = ("fp32", "fused", "int8", "bf16")
_ORIGINAL: dict = {}


def read_manifest(model_dir: str) -> dict | None:
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def activate(model_dir: str, wanted: str | None = None) -> str:
    wanted = (wanted or "auto").strip().lower()
    if wanted not in MODES + ("auto",):
        raise ValueError(f"MODEL_OPTIMIZE={wanted!r}: expected one of auto, {', '.join(MODES)}")
    manifest = read_manifest(model_dir)
    converted = (manifest or {}).get("mode", "fp32")
    if wanted == "fp32" or (wanted == "auto" and converted == "fp32"):
        deactivate()
        return "fp32"
    if wanted != "auto" and wanted != converted:
        raise ValueError(f"{wanted} inference was asked for, but the model package in {model_dir} holds "
                         f"{'no converted network' if manifest is None else converted + ' files'}; convert it "
                         f"with model.optimize: {wanted} (or serve it as fp32)")
    files = {os.path.realpath(os.path.join(model_dir, original)): os.path.join(model_dir, target)
             for original, target in manifest["files"].items()}
    missing = [target for target in files.values() if not os.path.isfile(target)]
    if missing:
        raise FileNotFoundError(f"optimize.json names converted files that are missing: {missing}")
    install(files)
    return converted


def install(files: dict) -> None:
    """Redirect loads of each realpath key of ``files`` to its value (replaces any earlier redirect)."""
    import mxnet as mx

    deactivate()
    _ORIGINAL.update(sym=mx.symbol.load, nd=mx.ndarray.load)

    def redirect(path):
        return files.get(os.path.realpath(path), path) if isinstance(path, str) else path

    mx.symbol.load = lambda fname: _ORIGINAL["sym"](redirect(fname))
    mx.ndarray.load = lambda fname: _ORIGINAL["nd"](redirect(fname))


def deactivate() -> None:
    if _ORIGINAL:
        import mxnet as mx

        mx.symbol.load, mx.ndarray.load = _ORIGINAL.pop("sym"), _ORIGINAL.pop("nd")
