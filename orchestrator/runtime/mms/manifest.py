"""The MMS-legacy manifest the runtime builds for a ModelArts model folder.

Contract of ``build_manifest(model_dir, model_name=None, environ=None)``::

    {"Engine": {"MXNet": "<installed version>"},
     "Model": {"Model-Name": name, "Service": "customize_service.py",
               "Symbol": "<x>-symbol.json" | None, "Parameters": "<x>-NNNN.params" | None,
               "Signature": {"inputs": [{"data_name", "data_shape"}],
                             "outputs": [{"data_name", "data_shape"}]}}}

* ``Symbol`` is the ``*-symbol.json`` in the folder (preferring one that has params);
  ``Parameters`` the matching ``<prefix>-NNNN.params`` with the highest epoch NNNN.
  Either is ``None`` when absent: services that don't need a network still load.
* Signature precedence, lowest first: defaults (input ``images`` ``[0,3,224,224]``,
  output ``softmax`` ``[]``), a ``signature.json`` or ``MANIFEST.json`` in the folder, then
  the service environment ``input_data_name``, ``input_data_shape``, ``output_data_name``,
  ``output_data_shape`` (shapes as ``0,3,224,224``; a leading 0 means "any batch").

This module imports nothing heavy (no mxnet), so it is cheap to test and to call.
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS_RE = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$")

DEFAULT_INPUT_NAME = "images"
DEFAULT_INPUT_SHAPE = "0,3,224,224"
DEFAULT_OUTPUT_NAME = "softmax"


def parse_shape(text) -> list[int]:
    """``"0,3,224,224"``, ``"[0, 3, 224, 224]"`` or a list -> ``[0, 3, 224, 224]``; empty -> []."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    cleaned = str(text).strip().strip("[]()")
    try:
        return [int(part) for part in cleaned.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"bad data shape {text!r}: expected integers like 0,3,224,224") from None


def find_model_files(model_dir: str) -> tuple[str | None, str | None]:
    """Return ``(symbol_file, params_file)`` names (not paths) found in ``model_dir``."""
    names = sorted(os.listdir(model_dir))
    params = [(m["prefix"], int(m["epoch"]), n) for n in names if (m := _PARAMS_RE.match(n))]
    prefixes_with_params = {p for p, _, _ in params}
    symbols = [n for n in names if n.endswith(SYMBOL_SUFFIX)]
    # Several symbols (e.g. an exported copy): take the one that actually has weights.
    symbols.sort(key=lambda n: n[: -len(SYMBOL_SUFFIX)] not in prefixes_with_params)
    symbol = symbols[0] if symbols else None
    if symbol is not None:
        same_prefix = [p for p in params if p[0] == symbol[: -len(SYMBOL_SUFFIX)]]
        params = same_prefix or params
    best = max(params, key=lambda p: (p[1], p[2]))[2] if params else None
    return symbol, best


def _file_signature(model_dir: str) -> dict:
    """Signature from ``signature.json`` or from a legacy ``MANIFEST.json``, else {}."""
    path = os.path.join(model_dir, "signature.json")
    manifest_path = os.path.join(model_dir, "MANIFEST.json")
    if not os.path.isfile(path) and os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as fh:
            sig = json.load(fh).get("Model", {}).get("Signature")
        if isinstance(sig, dict):
            return sig
        path = os.path.join(model_dir, sig) if isinstance(sig, str) else path
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def build_signature(model_dir: str, environ=None) -> dict:
    """The ``{'inputs': [...], 'outputs': [...]}`` dict (see module docstring)."""
    env = os.environ if environ is None else environ
    sig = {
        "inputs": [{"data_name": DEFAULT_INPUT_NAME, "data_shape": parse_shape(DEFAULT_INPUT_SHAPE)}],
        "outputs": [{"data_name": DEFAULT_OUTPUT_NAME, "data_shape": []}],
    }
    from_file = _file_signature(model_dir)
    for key in ("inputs", "outputs"):
        if from_file.get(key):
            sig[key] = [{"data_name": d.get("data_name", ""), "data_shape": parse_shape(d.get("data_shape", []))}
                        for d in from_file[key]]
    # Environment wins: it is how a deployed service is reconfigured without a new package.
    for key, side in (("input", "inputs"), ("output", "outputs")):
        first = sig[side][0]
        if env.get(f"{key}_data_name"):
            first["data_name"] = env[f"{key}_data_name"]
        if env.get(f"{key}_data_shape"):
            first["data_shape"] = parse_shape(env[f"{key}_data_shape"])
    return sig


def _mxnet_version() -> str | None:
    try:
        return metadata.version("mxnet")
    except metadata.PackageNotFoundError:
        return None


def build_manifest(model_dir: str, model_name: str | None = None, environ=None) -> dict:
    """The manifest dict legacy services receive as their ``manifest`` argument."""
    symbol, params = find_model_files(model_dir)
    return {
        "Engine": {"MXNet": _mxnet_version()},
        "Model": {
            "Model-Name": model_name or os.path.basename(os.path.abspath(model_dir)),
            "Service": "customize_service.py",
            "Symbol": symbol,
            "Parameters": params,
            "Signature": build_signature(model_dir, environ),
        },
    }
