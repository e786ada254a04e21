"""The predict step's test cases (held-out images with their true labels, or a folder the
user names), sending them to a service, and scoring the answers."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from .backends.base import BackendError
from .errors import UserError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def cases(plan) -> list[dict]:
    """[{"path", "expected"}]: expected is the true label name, or None when unknown."""
    if plan.predict.images == "holdout":
        found = _holdout(plan.data.packed_dir, plan.data.images_dir)
    else:
        root = Path(plan.predict.images)
        root = root if root.is_absolute() else plan.spec_path.parent / root
        found = _folder(root)
    if not found:
        raise UserError("no images to predict", hint="check predict.images and data.test_ratio")
    return found[: plan.predict.limit] if plan.predict.limit else found


def _holdout(packed: Path, images: Path) -> list[dict]:
    labels = (packed / "labels.txt").read_text().splitlines()
    out = []
    for line in (packed / "test.lst").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            out.append({"path": str(images / parts[-1]), "expected": labels[int(float(parts[1]))]})
    return out


def _folder(root: Path) -> list[dict]:
    if root.is_file():
        return [{"path": str(root), "expected": None}]
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTS and path.is_file():
            rel = path.relative_to(root)
            out.append({"path": str(path), "expected": rel.parts[0] if len(rel.parts) > 1 else None})
    return out


def send(backend, service, case: dict) -> dict:
    path = Path(case["path"])
    result = {"file": str(path), "expected": case["expected"], "predicted_label": None, "correct": None}
    try:
        answer = backend.predict(service, path.name, path.read_bytes())
    except (BackendError, OSError) as exc:
        return {**result, "status": None, "error": str(exc)}
    result.update(status=answer.status, seconds=round(answer.seconds, 4))
    if answer.status != 200:
        return {**result, "error": answer.body.get("error_msg") or json.dumps(answer.body)[:200]}
    label = answer.body.get("predicted_label")
    scores = answer.body.get("scores") or [[label, None]]
    result.update(predicted_label=label, score=scores[0][1])
    if case["expected"] is not None:
        result["correct"] = label == case["expected"]
    return result


def summarise(results: list[dict]) -> dict:
    scored = [r for r in results if r["correct"] is not None]
    latencies = sorted(r["seconds"] for r in results if r.get("seconds") is not None)
    return {"count": len(results), "errors": sum(1 for r in results if r.get("error")),
            "correct": sum(1 for r in scored if r["correct"]),
            "accuracy": (sum(1 for r in scored if r["correct"]) / len(scored)) if scored else None,
            "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1) if latencies else None}


def write(path: Path, results: list[dict]) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text("".join(json.dumps(r) + "\n" for r in results))
    os.replace(tmp, path)
