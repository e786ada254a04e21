"""``model.inference_code``: build the ``model/`` folder ModelArts imports from a training
job's output plus a folder of inference code, as the console's "import from a training job"
does with the files a tutorial copies next to the checkpoint by hand.

``assemble(storage, train_url, code_dir, work_dir, package_uri)`` downloads the exported
model files (``train_url/model/`` when the job wrote one, else the one ``*-symbol.json`` in
the output and the latest ``*-NNNN.params`` of its prefix), lays ``code_dir``'s files over
them (``code_dir`` None: a plain copy of the job's package, which ``model.optimize`` then
converts), checks the result as the import will, and uploads it to ``package_uri + "model/"``.
Works with any backend's storage; the training output itself is never changed.

``validate_package(model_dir)`` lists what would make ModelArts' import refuse a package; the
local backend and the emulator check with it before they register anything.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .errors import UserError

_PARAMS = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git")


def validate_package(model_dir: Path) -> list[str]:
    """Problems that would make ModelArts refuse the package (empty list: valid)."""
    problems = []
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return [f"{config_path.name} is missing from the model/ folder"]
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"config.json is not valid JSON: {exc}"]
    for key in ("model_type", "model_algorithm"):
        if not isinstance(config.get(key), str) or not config.get(key):
            problems.append(f"config.json needs a '{key}' string")
    apis = config.get("apis", [])
    if not isinstance(apis, list) or not any(isinstance(a, dict) and a.get("url") == "/" and
                                             str(a.get("method", "")).lower() == "post" for a in apis):
        problems.append("config.json 'apis' needs an entry with url '/' and method 'post'")
    if not (model_dir / "customize_service.py").is_file():
        problems.append("customize_service.py is missing from the model/ folder")
    symbols = sorted(model_dir.glob("*-symbol.json"))
    if len(symbols) != 1:
        problems.append(f"expected exactly one *-symbol.json, found {len(symbols)}")
    elif not list(model_dir.glob(symbols[0].name[: -len("-symbol.json")] + "-*.params")):
        problems.append(f"no .params file next to {symbols[0].name}")
    return problems


def model_files(uris: list[str], train_url: str) -> list[str]:
    """The URIs under ``train_url`` that make up the trained model (see module docstring)."""
    exported = [u for u in uris if u.startswith(train_url + "model/")]
    if exported:
        return exported
    symbols = [u for u in uris if u.endswith("-symbol.json")]
    if len(symbols) != 1:
        found = ", ".join(u[len(train_url):] for u in symbols) or "none"
        raise UserError(f"model.inference_code: the training output {train_url} needs exactly one *-symbol.json "
                        f"to build model/ from (found: {found})",
                        hint="export the model into the output's model/ folder, or save one checkpoint prefix")
    prefix = symbols[0][: -len("-symbol.json")]
    params = sorted((int(m["epoch"]), u) for u in uris
                    if (m := _PARAMS.match(u.rsplit("/", 1)[-1])) and u.rsplit("-", 1)[0] == prefix)
    if not params:
        raise UserError(f"model.inference_code: no {prefix.rsplit('/', 1)[-1]}-NNNN.params next to "
                        f"{symbols[0][len(train_url):]} in {train_url}", hint="did the training save a checkpoint?")
    return [symbols[0], params[-1][1]]


def assemble(storage, train_url: str, code_dir: Path | None, work_dir: Path, package_uri: str) -> list[str]:
    """Build and upload ``package_uri/model/``; returns the names of its files."""
    target = work_dir / "model"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    uris = [u for u in storage.list(train_url) if not u.endswith("/")]
    for uri in model_files(uris, train_url):
        rel = uri[len(train_url):].removeprefix("model/")
        storage.get(uri, str(target / rel))
    if code_dir is not None:
        shutil.copytree(code_dir, target, dirs_exist_ok=True, ignore=IGNORE)
    problems = validate_package(target)
    if problems:
        built = f"{train_url} and model.inference_code {code_dir}" if code_dir is not None else train_url
        raise UserError(f"model/ built from {built} is not a valid model package: " + "; ".join(problems),
                        hint="model.inference_code must hold customize_service.py and config.json (model_type, "
                             "model_algorithm, apis); the training output the symbol and params files")
    storage.put(str(target), package_uri + "model/")
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
