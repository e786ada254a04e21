"""The ``evaluate`` and ``batch_predict`` steps: the trained model package from the job's
output, run in worker processes over files, without a service. Called by ``Pipeline``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import predictions
from ..errors import StepFailed, UserError
from .run import run_workers


def model_package(p, folder: Path) -> Path:
    """The model package the import step would register (the job's ``model/``, or the one
    assembled under the run prefix with ``model.inference_code`` or for ``model.optimize``),
    downloaded once into ``folder``."""
    target = folder / "model"
    if not (target / "customize_service.py").is_file():
        shutil.rmtree(target, ignore_errors=True)
        if p.plan.model.source_location != p.plan.output_uri:
            p._record_prefix(p.plan.model.source_location)
            p._assemble_model()
        p.backend.storage.get(p.plan.model.source_location + "model/", str(target))
    return target


def evaluate(p, info: dict) -> dict:
    section = p.plan.evaluate
    cases = _cases(p, section.images, section.limit)
    work = p.plan.run_dir / "evaluate"
    model = model_package(p, work)
    records = run_workers("evaluate", model, [c["path"] for c in cases], work, section.workers,
                          lambda done, total: p._emit("prediction", "evaluate", "", done=done, total=total,
                                                      result={}))
    labels = _labels(model)
    metrics = score([(c["expected"], records.get(c["path"], {})) for c in cases], labels)
    (p.plan.run_dir / "evaluation.json").write_text(json.dumps(metrics, indent=1))
    info.update(metrics={k: metrics[k] for k in ("accuracy", "top5_accuracy", "count", "errors")},
                per_class=metrics["per_class"], report=str(p.plan.run_dir / "evaluation.json"))
    return metrics


def batch_predict(p, info: dict) -> dict:
    section = p.plan.batch
    work = p.plan.run_dir / "batch"
    model = model_package(p, work)
    files, names = _batch_inputs(p, section, work)
    records = run_workers("batch_predict", model, files, work, section.workers,
                          lambda done, total: p._emit("prediction", "batch_predict", "", done=done, total=total,
                                                      result={}))
    lines = [{**records[f], "file": names[f]} for f in files if f in records]
    out = work / "predictions.jsonl"
    predictions.write(out, lines)
    target = section.output
    if target and target.startswith("obs://"):
        p.backend.storage.put(str(out), target.rstrip("/") + "/")
        target = target.rstrip("/") + "/predictions.jsonl"
    elif target:
        folder = Path(os.path.expanduser(target))
        folder = folder if folder.is_absolute() else p.plan.spec_path.parent / folder
        folder.mkdir(parents=True, exist_ok=True)
        predictions.write(folder / "predictions.jsonl", lines)
        target = str(folder / "predictions.jsonl")
    else:
        target = str(out)
    errors = sum(1 for line in lines if line.get("status") != 200)
    info.update(count=len(lines), errors=errors, output=target)
    if lines and errors == len(lines):
        raise StepFailed("batch_predict", f"every one of {len(lines)} files failed, e.g. {lines[0].get('error')}")
    return info


def score(pairs: list[tuple[str | None, dict]], labels: list[str]) -> dict:
    """Accuracy, top-5, per-class accuracy and the confusion matrix (rows: true label,
    columns: predicted label, in ``labels`` order) of (expected, record) pairs."""
    index = {name: i for i, name in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    correct = top5 = errors = 0
    per_class = {name: [0, 0] for name in labels}
    for expected, record in pairs:
        result = record.get("result") if record.get("status") == 200 else None
        if result is None:
            errors += 1
        predicted = (result or {}).get("predicted_label")
        ranked = [s[0] for s in (result or {}).get("scores", [])[:5]]
        hit = predicted == expected
        correct += hit
        top5 += expected in ranked or hit
        if expected in per_class:
            per_class[expected][0] += hit
            per_class[expected][1] += 1
            if predicted in index:
                confusion[index[expected]][index[predicted]] += 1
    n = len(pairs)
    return {"count": n, "errors": errors, "accuracy": correct / n if n else None,
            "top5_accuracy": top5 / n if n else None, "labels": labels,
            "per_class": {k: (c / t if t else None) for k, (c, t) in per_class.items()}, "confusion": confusion}


def _labels(model: Path) -> list[str]:
    for name in ("labels.txt", "label.txt", "synset.txt"):
        if (model / name).is_file():
            return [line.strip() for line in (model / name).read_text().splitlines() if line.strip()]
    return []


def _cases(p, images: str, limit: int | None) -> list[dict]:
    found = predictions.cases_in(p.plan, images)
    if not found:
        raise UserError(f"evaluate.images {images}: no images found")
    if any(c["expected"] is None for c in found):
        raise UserError(f"evaluate needs labelled images: {images} must hold one sub-folder per class")
    return found[:limit] if limit else found


def _batch_inputs(p, section, work: Path) -> tuple[list[str], dict[str, str]]:
    """(local files, {local file: name in the output}) of ``batch_predict.input``."""
    source = section.input
    if source.startswith("obs://"):
        staged = work / "input"
        p.backend.storage.get(source.rstrip("/") + "/", str(staged))
        files = sorted(str(f) for f in staged.rglob("*") if f.is_file())
        names = {f: source.rstrip("/") + "/" + Path(f).relative_to(staged).as_posix() for f in files}
    elif source == "holdout":
        files = [c["path"] for c in predictions.cases_in(p.plan, "holdout")]
        names = {f: f for f in files}
    else:
        root = Path(source).expanduser()
        root = root if root.is_absolute() else p.plan.spec_path.parent / root
        files = [str(root)] if root.is_file() else sorted(
            str(f) for f in root.rglob("*") if f.is_file() and not f.name.startswith("."))
        names = {f: f for f in files}
    if not files:
        raise UserError(f"batch_predict.input {source} holds no files")
    files = files[:section.limit] if section.limit else files
    return files, names
